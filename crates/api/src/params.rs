//! The decoded request parameters, with typed getters that answer the documented errors.
//! Arrays arrive flattened (`Name.N`, `Name.N.Field`, 1-based, gaps allowed).

use std::collections::BTreeMap;

use model::ApiError;

/// All parameters of a request, from the query and the form body, in arrival order.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// Longest parameter value, in bytes (a repair parameter is at most 1,024; a cloud secret,
/// a selection's target, a whitelist's reason far less). Checked before anything is built from
/// the values, so no filter can reach the database as a pattern or an expression too large.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Longest parameter name (`OperationTaskInstances.1000.InstanceId` is 38).
pub const MAX_NAME_BYTES: usize = 128;
/// Most parameters in one request.
pub const MAX_PARAMS: usize = 20_000;
/// Most entries of one array parameter (`Name.N`, `Name.N.Field`): a selection is changed
/// 2,000 targets at a time; an explicit instance list of a submission is at most this long
/// (larger sets go through a selection and `RelationKey`).
pub const MAX_ITEMS: usize = 2_000;

impl Params {
    /// Checks the request's size limits and wraps its decoded pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Result<Params, ApiError> {
        if pairs.len() > MAX_PARAMS {
            return Err(ApiError::too_many_items("the request", MAX_PARAMS));
        }
        for (k, v) in &pairs {
            if k.len() > MAX_NAME_BYTES {
                let shown: String = k.chars().take(40).collect();
                return Err(ApiError::parameter_too_long(&format!("{shown}…"), MAX_NAME_BYTES));
            }
            if v.len() > MAX_VALUE_BYTES {
                return Err(ApiError::parameter_too_long(k, MAX_VALUE_BYTES));
            }
        }
        Ok(Params { pairs })
    }

    /// Every pair.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The raw value (first occurrence), even if empty.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A non-empty string value.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    /// A required non-empty string (`MissingParameter` naming it).
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name).ok_or_else(|| ApiError::missing_parameter(name))
    }

    /// An integer (`InvalidParameter` if it is not one).
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.str(name).map(|v| v.trim().parse().map_err(|_| ApiError::invalid_parameter(name))).transpose()
    }

    /// A required integer.
    pub fn required_int(&self, name: &str) -> Result<i64, ApiError> {
        self.int(name)?.ok_or_else(|| ApiError::missing_parameter(name))
    }

    /// A boolean, case-insensitive (`True` from Python, `true` from the others).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid_parameter(name)),
        }
    }

    /// `Name.N` values ordered by N as a number (empty values skipped); at most [`MAX_ITEMS`].
    pub fn list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let prefix = format!("{name}.");
        let mut items: BTreeMap<u32, String> = BTreeMap::new();
        for (k, v) in &self.pairs {
            if let Some(n) = k.strip_prefix(&prefix) {
                let n: u32 = n.parse().map_err(|_| ApiError::invalid_parameter(k))?;
                if !v.is_empty() {
                    items.entry(n).or_insert_with(|| v.clone());
                }
                if items.len() > MAX_ITEMS {
                    return Err(ApiError::too_many_items(name, MAX_ITEMS));
                }
            }
        }
        Ok(items.into_values().collect())
    }

    /// `Name.N` values that must each be accepted by `valid` (`InvalidParameter` naming the
    /// list otherwise): the enum filters (`Statuses`, `RiskLevels`, …).
    pub fn enum_list(&self, name: &str, valid: impl Fn(&str) -> bool) -> Result<Vec<String>, ApiError> {
        let values = self.list(name)?;
        match values.iter().any(|v| !valid(v)) {
            true => Err(ApiError::invalid_parameter(name)),
            false => Ok(values),
        }
    }

    /// `Name.N` values, each parsed into its type (`InvalidParameter` for one that is not).
    pub fn parsed_list<T>(&self, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, ApiError> {
        self.list(name)?.iter().map(|v| parse(v).ok_or_else(|| ApiError::invalid_parameter(name))).collect()
    }

    /// `Name.N` integers.
    pub fn int_list(&self, name: &str) -> Result<Vec<i64>, ApiError> {
        self.list(name)?.iter().map(|v| v.trim().parse().map_err(|_| ApiError::invalid_parameter(name))).collect()
    }

    /// `Name.N.Field` objects ordered by N as a number; each is a field → value map. At most
    /// [`MAX_ITEMS`].
    pub fn objects(&self, name: &str) -> Result<Vec<BTreeMap<String, String>>, ApiError> {
        self.objects_at_most(name, MAX_ITEMS)
    }

    /// [`Params::objects`], at most `max` of them (`TooManyItems` otherwise).
    pub fn objects_at_most(&self, name: &str, max: usize) -> Result<Vec<BTreeMap<String, String>>, ApiError> {
        let prefix = format!("{name}.");
        let mut items: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
        for (k, v) in &self.pairs {
            if let Some(rest) = k.strip_prefix(&prefix) {
                let (n, field) = rest.split_once('.').ok_or_else(|| ApiError::invalid_parameter(k))?;
                let n: u32 = n.parse().map_err(|_| ApiError::invalid_parameter(k))?;
                items.entry(n).or_default().entry(field.to_string()).or_insert_with(|| v.clone());
                if items.len() > max {
                    return Err(ApiError::too_many_items(name, max));
                }
            }
        }
        Ok(items.into_values().collect())
    }

    /// `CurrentPage` (≥ 1, default 1) and `PageSize` (1 … max, default `default`; larger values
    /// are clamped to max) as (page, size, offset).
    pub fn page(&self, default: i64, max: i64) -> Result<(i64, i64, i64), ApiError> {
        let page = self.int("CurrentPage")?.unwrap_or(1);
        let size = self.int("PageSize")?.unwrap_or(default);
        if page < 1 {
            return Err(ApiError::invalid_parameter("CurrentPage"));
        }
        if size < 1 {
            return Err(ApiError::invalid_parameter("PageSize"));
        }
        let size = size.min(max);
        let offset = (page - 1).checked_mul(size).ok_or_else(|| ApiError::invalid_parameter("CurrentPage"))?;
        Ok((page, size, offset))
    }

    /// `Lang`.
    pub fn lang(&self) -> model::Lang {
        model::Lang::parse(self.str("Lang"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::form_decode;

    impl Params {
        fn new_unchecked(pairs: Vec<(String, String)>) -> Params {
            Params::new(pairs).unwrap()
        }
    }

    #[test]
    fn sizes_are_capped_before_anything_is_built() {
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        let e = Params::new(vec![("InstanceIdKey".into(), long)]).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "ParameterTooLong"));
        assert!(e.message.contains("InstanceIdKey"));
        let many: Vec<(String, String)> =
            (1..=MAX_ITEMS + 1).map(|n| (format!("OperationTaskInstances.{n}.InstanceId"), "i".into())).collect();
        let p = Params::new(many).unwrap();
        assert_eq!(p.objects("OperationTaskInstances").unwrap_err().code, "TooManyItems");
        assert_eq!(p.objects_at_most("OperationTaskInstances", 10).unwrap_err().code, "TooManyItems");
        let list: Vec<(String, String)> =
            (1..=MAX_ITEMS + 1).map(|n| (format!("InstanceIds.{n}"), "i".into())).collect();
        assert_eq!(Params::new(list).unwrap().list("InstanceIds").unwrap_err().code, "TooManyItems");
    }

    #[test]
    fn flat_arrays_decode_by_number_with_gaps() {
        let p = Params::new_unchecked(form_decode(
            "CheckIds.10=10&CheckIds.2=2&CheckIds.1=1&X.3.InstanceId=c&X.1.InstanceId=a&X.1.Vendor=0&Flag=True&Off=false",
        ));
        assert_eq!(p.int_list("CheckIds").unwrap(), vec![1, 2, 10]);
        let xs = p.objects("X").unwrap();
        assert_eq!(xs.len(), 2);
        assert_eq!(xs[0]["InstanceId"], "a");
        assert_eq!(xs[0]["Vendor"], "0");
        assert_eq!(xs[1]["InstanceId"], "c");
        assert_eq!(p.bool("Flag").unwrap(), Some(true));
        assert_eq!(p.bool("Off").unwrap(), Some(false));
        assert_eq!(p.bool("Missing").unwrap(), None);
    }

    #[test]
    fn malformed_values_name_the_parameter() {
        let p = Params::new_unchecked(form_decode("CheckId=abc&CheckIds.x=1&Flag=yes&PageSize=0"));
        assert_eq!(p.int("CheckId").unwrap_err().message, "The specified parameter \"CheckId\" is not valid.");
        assert_eq!(p.int_list("CheckIds").unwrap_err().code, "InvalidParameter");
        assert_eq!(p.bool("Flag").unwrap_err().code, "InvalidParameter");
        assert_eq!(p.page(20, 100).unwrap_err().message, "The specified parameter \"PageSize\" is not valid.");
        assert_eq!(p.required("Type").unwrap_err().code, "MissingParameter");
        let big = Params::new_unchecked(form_decode("PageSize=5000&CurrentPage=9223372036854775807"));
        assert_eq!(big.page(20, 100).unwrap_err().code, "InvalidParameter");
        assert_eq!(Params::new_unchecked(form_decode("PageSize=5000")).page(20, 100).unwrap(), (1, 100, 0));
    }
}
