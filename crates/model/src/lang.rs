/// Language of display texts (`Lang` parameter). Chinese is the reference default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    /// `zh` (default)
    #[default]
    Zh,
    /// `en`
    En,
}

impl Lang {
    /// Parses the `Lang` parameter; anything but `en` (case-insensitive) is Chinese, like the
    /// reference, which never rejects a language.
    pub fn parse(s: Option<&str>) -> Lang {
        match s {
            Some(v) if v.eq_ignore_ascii_case("en") => Lang::En,
            _ => Lang::Zh,
        }
    }

    /// Picks the text for this language.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// A display text in both languages.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Text {
    /// Chinese.
    pub zh: String,
    /// English.
    pub en: String,
}

impl Text {
    /// The text in `lang`.
    pub fn get(&self, lang: Lang) -> &str {
        lang.pick(&self.zh, &self.en)
    }
}
