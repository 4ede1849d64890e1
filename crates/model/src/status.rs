use crate::Lang;

/// An enum of the API: its values, `ALL`, and its wire form — a string (`as_str`, `parse`,
/// `Display`) or, with `code`, a number (`code`, `from_code`: the `StatusCode` fields of runs).
macro_rules! wire_enum {
    (@enum $(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident),+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
        }
    };
    (code $(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $c:literal),+ $(,)? }) => {
        wire_enum!(@enum $(#[$m])* $name { $($(#[$vm])* $v),+ });
        impl $name {
            /// The wire (and stored) code.
            pub fn code(self) -> i64 { match self { $($name::$v => $c),+ } }
            /// The value of a code; None for a code the API does not define.
            pub fn from_code(code: i64) -> Option<$name> {
                match code { $($c => Some($name::$v),)+ _ => None }
            }
        }
    };
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        wire_enum!(@enum $(#[$m])* $name { $($(#[$vm])* $v),+ });
        impl $name {
            /// The wire spelling.
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $s),+ } }
            /// Parses the wire spelling (exact, upper case as the SDKs send it).
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

wire_enum! {
    code
    /// The status of a check run (`StatusCode` of ListOperationProcess).
    RunStatus {
        /// Created, no worker has taken it yet.
        NotStarted = 0,
        /// A worker is checking its instances.
        Checking = 1,
        /// Every instance was checked (or failed to be).
        Completed = 2,
        /// Ran out of time (defined by the API; posture's runs do not time out).
        TimedOut = 3,
    }
}

impl RunStatus {
    /// Whether a worker may still take the run (unfinished).
    pub fn is_unfinished(self) -> bool {
        matches!(self, RunStatus::NotStarted | RunStatus::Checking)
    }
}

wire_enum! {
    code
    /// The status of one instance of a check run (`StatusCode` of ListOperationProcessDetail).
    RunDetailStatus {
        /// Not checked yet.
        NotStarted = 0,
        /// Being checked.
        Checking = 1,
        /// Checked; its results are stored.
        Succeeded = 2,
        /// Ran out of time (defined by the API; not produced by posture).
        TimedOut = 3,
        /// Could not be checked (unreachable, or gone).
        Failed = 4,
    }
}

impl RunDetailStatus {
    /// Whether the instance still has to be checked.
    pub fn is_unfinished(self) -> bool {
        matches!(self, RunDetailStatus::NotStarted | RunDetailStatus::Checking)
    }
}

wire_enum! {
    /// The result of one check item on one instance.
    CheckStatus {
        /// The configuration meets the rule.
        Pass = "PASS",
        /// The configuration fails the rule.
        NotPass = "NOT_PASS",
        /// A check is running.
        Checking = "CHECKING",
        /// Never checked.
        NotCheck = "NOT_CHECK",
        /// Exempted by a whitelist rule.
        Whitelist = "WHITELIST",
        /// The check itself failed (e.g. the configuration could not be read).
        Failed = "FAILED",
    }
}

wire_enum! {
    /// What an operation task does.
    TaskType {
        /// Back up, change the configuration, verify.
        Repair = "REPAIR",
        /// Restore the backup of an earlier repair, verify.
        Rollback = "ROLLBACK",
    }
}

wire_enum! {
    /// How SubmitOperationTask picks its instances.
    DimensionType {
        /// The instances listed (or selected through RelationKey).
        Instance = "INSTANCE",
        /// The check item as a whole: every instance whose result is NOT_PASS.
        CheckId = "CHECK_ID",
    }
}

wire_enum! {
    /// The status of one per-instance operation task (sas-api.md §3).
    TaskStatus {
        /// Created, waiting for a worker.
        Init = "INIT",
        /// Processing failed before anything was changed.
        Fail = "FAIL",
        /// Waiting for an earlier change of the same file (or cloud aspect) of the instance to
        /// finish; then it becomes `INIT` (a repair) or `ROLL_BACK_INIT` (a rollback).
        Throttling = "THROTTLING",
        /// Taking the snapshot.
        InBackup = "IN_BACKUP",
        /// Snapshot stored.
        BackedUp = "BACKED_UP",
        /// Snapshot could not be taken; nothing was changed.
        BackupFail = "BACKUP_FAIL",
        /// Changing the configuration.
        Repairing = "REPAIRING",
        /// The change is applied.
        RepairSuccess = "REPAIR_SUCCESS",
        /// The change failed; the snapshot was restored.
        RepairFail = "REPAIR_FAIL",
        /// Re-evaluating the check after the change.
        RepairSuccessVerifying = "REPAIR_SUCCESS_VERIFYING",
        /// Applied, but the check still fails.
        RepairSuccessUnverified = "REPAIR_SUCCESS_UNVERIFIED",
        /// Applied and the check passes.
        RepairSuccessVerified = "REPAIR_SUCCESS_VERIFIED",
        /// Being re-executed (reserved).
        RepairReExecute = "REPAIR_RE_EXECUTE",
        /// Rollback submitted, waiting for a worker.
        RollBackInit = "ROLL_BACK_INIT",
        /// Restoring the snapshot.
        RollBacking = "ROLL_BACKING",
        /// Snapshot restored.
        RollBacked = "ROLL_BACKED",
        /// Rollback failed; nothing was changed.
        RollBackFail = "ROLL_BACK_FAIL",
        /// Re-evaluating the check after the restore.
        RollBackVerifying = "ROLL_BACK_VERIFYING",
        /// Restored, but the files no longer match the snapshot.
        RollBackUnverified = "ROLL_BACK_UNVERIFIED",
        /// Restored and re-evaluated.
        RollBackVerified = "ROLL_BACK_VERIFIED",
        /// Cancelled (CancelOperationTask, a posture extension) before it changed anything.
        Cancelled = "CANCELLED",
        /// Submitted where approval is required (a posture extension): waits for an
        /// ApproveOperationTask by another key, then joins its file's queue.
        WaitApproval = "WAIT_APPROVAL",
    }
}

impl TaskStatus {
    /// The one transition table. A task moves only along these edges; the store refuses any
    /// other write. Re-running a step after a lost lease keeps the status (no edge needed).
    pub fn next(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            // CANCELLED: a repair that has changed nothing yet may be cancelled (the store's
            // cancel writes it, taking the lease away; it is never a worker's step).
            Init => &[InBackup, Fail, Cancelled],
            // A queued task is released by the store when the change before it ends.
            Throttling => &[Init, RollBackInit, Cancelled],
            // Approved: it joins the queue of what it changes (INIT, or THROTTLING behind a
            // change under way); rejected, expired or cancelled: CANCELLED.
            WaitApproval => &[Init, Throttling, Cancelled],
            InBackup => &[BackedUp, BackupFail, Cancelled],
            BackedUp => &[Repairing, RepairFail, Cancelled],
            Repairing => &[RepairSuccess, RepairFail],
            RepairSuccess => &[RepairSuccessVerifying],
            RepairSuccessVerifying => &[RepairSuccessVerified, RepairSuccessUnverified],
            // A rollback is never cancelled: it is what keeps a repair undoable.
            RollBackInit => &[RollBacking, RollBackFail],
            RollBacking => &[RollBacked, RollBackFail],
            RollBacked => &[RollBackVerifying],
            RollBackVerifying => &[RollBackVerified, RollBackUnverified],
            // Terminal, or reserved statuses posture never enters.
            Fail
            | BackupFail
            | RepairFail
            | RepairSuccessUnverified
            | RepairSuccessVerified
            | RollBackFail
            | RollBackUnverified
            | RollBackVerified
            | Cancelled
            | RepairReExecute => &[],
        }
    }

    /// The statuses a task goes through, from this one, when it cannot go on: its failure
    /// status last, every step an edge of [`TaskStatus::next`]. Usually the failure is one edge
    /// away; a change that was applied is first taken to its verification, and ends unverified.
    /// Empty for a terminal status.
    pub fn failure_path(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            Init => &[Fail],
            InBackup => &[BackupFail],
            BackedUp | Repairing => &[RepairFail],
            RepairSuccess => &[RepairSuccessVerifying, RepairSuccessUnverified],
            RepairSuccessVerifying => &[RepairSuccessUnverified],
            // A queued rollback fails without having restored anything.
            RollBackInit | RollBacking => &[RollBackFail],
            RollBacked => &[RollBackVerifying, RollBackUnverified],
            RollBackVerifying => &[RollBackUnverified],
            // A queued task leaves THROTTLING only when released by the store, a waiting one
            // WAIT_APPROVAL only when approved or cancelled; reserved and terminal statuses
            // have no way out.
            Throttling
            | WaitApproval
            | RepairReExecute
            | Fail
            | BackupFail
            | RepairFail
            | RepairSuccessUnverified
            | RepairSuccessVerified
            | RollBackFail
            | RollBackUnverified
            | RollBackVerified
            | Cancelled => &[],
        }
    }

    /// Whether `self → to` is an allowed transition.
    pub fn can_move_to(self, to: TaskStatus) -> bool {
        self.next().contains(&to)
    }

    /// A terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        use TaskStatus::*;
        matches!(
            self,
            Fail | BackupFail
                | RepairFail
                | RepairSuccessUnverified
                | RepairSuccessVerified
                | RollBackFail
                | RollBackUnverified
                | RollBackVerified
                | Cancelled
        )
    }

    /// The terminal statuses, for SQL (`status NOT IN (...)`).
    pub fn terminal() -> impl Iterator<Item = TaskStatus> {
        TaskStatus::ALL.iter().copied().filter(|s| s.is_terminal())
    }

    /// The status a new task of this type starts in.
    pub fn initial(kind: TaskType) -> TaskStatus {
        match kind {
            TaskType::Repair => TaskStatus::Init,
            TaskType::Rollback => TaskStatus::RollBackInit,
        }
    }

    /// Whether a worker may lease a task in this status (unfinished, not queued, not waiting
    /// for approval).
    pub fn is_claimable(self) -> bool {
        !self.is_terminal() && !matches!(self, TaskStatus::Throttling | TaskStatus::WaitApproval)
    }

    /// Whether a repair task in this status changed the configuration and so can be rolled back.
    pub fn repair_applied(self) -> bool {
        matches!(self, TaskStatus::RepairSuccessVerified | TaskStatus::RepairSuccessUnverified)
    }

    /// The localised display name (`StatusShowName`).
    pub fn show_name(self, lang: Lang) -> &'static str {
        use TaskStatus::*;
        let (zh, en) = match self {
            Init => ("初始化", "Initializing"),
            Fail => ("处理失败", "Failed"),
            Throttling => ("排队中", "Throttling"),
            InBackup => ("备份中", "Backing up"),
            BackedUp => ("已备份", "Backed up"),
            BackupFail => ("备份失败", "Backup failed"),
            Repairing => ("修复中", "Repairing"),
            RepairSuccess => ("修复成功", "Repaired"),
            RepairFail => ("修复失败", "Repair failed"),
            RepairSuccessVerifying => ("修复验证中", "Verifying repair"),
            RepairSuccessUnverified => ("修复验证未通过", "Repair not verified"),
            RepairSuccessVerified => ("修复已验证", "Repair verified"),
            RepairReExecute => ("重新执行中", "Re-executing"),
            RollBackInit => ("回滚初始化", "Rollback initializing"),
            RollBacking => ("回滚中", "Rolling back"),
            RollBacked => ("已回滚", "Rolled back"),
            RollBackFail => ("回滚失败", "Rollback failed"),
            RollBackVerifying => ("回滚验证中", "Verifying rollback"),
            RollBackUnverified => ("回滚验证未通过", "Rollback not verified"),
            RollBackVerified => ("回滚已验证", "Rollback verified"),
            Cancelled => ("已取消", "Cancelled"),
            WaitApproval => ("待审批", "Waiting for approval"),
        };
        lang.pick(zh, en)
    }
}

/// When a root task stops (SubmitOperationTask's `FailureThreshold`, a posture extension): once
/// this many of its tasks have failed, its tasks that have changed nothing end `CANCELLED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureThreshold {
    /// `3`: three failed tasks.
    Count(i64),
    /// `10%`: a tenth of the root's tasks (at least one).
    Percent(i64),
}

impl FailureThreshold {
    /// `N` (≥ 1) or `N%` (1 … 100); None for anything else.
    pub fn parse(v: &str) -> Option<FailureThreshold> {
        let v = v.trim();
        let number = |s: &str| s.parse::<i64>().ok().filter(|n| *n >= 1 && s.bytes().all(|b| b.is_ascii_digit()));
        match v.strip_suffix('%') {
            Some(p) => number(p).filter(|p| *p <= 100).map(FailureThreshold::Percent),
            None => number(v).map(FailureThreshold::Count),
        }
    }

    /// Whether `failed` of `total` tasks reach it.
    pub fn reached(self, failed: i64, total: i64) -> bool {
        match self {
            FailureThreshold::Count(n) => failed >= n,
            FailureThreshold::Percent(p) => failed >= 1 && failed * 100 >= p * total,
        }
    }

    /// The stored (and wire) spelling.
    pub fn as_string(self) -> String {
        match self {
            FailureThreshold::Count(n) => n.to_string(),
            FailureThreshold::Percent(p) => format!("{p}%"),
        }
    }
}

impl TaskStatus {
    /// A task that ended without doing what it was for (counted by a `FailureThreshold`).
    pub fn is_failure(self) -> bool {
        use TaskStatus::*;
        matches!(self, Fail | BackupFail | RepairFail | RepairSuccessUnverified | RollBackFail | RollBackUnverified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    /// The whole table, written out once more by hand: every pair of statuses is checked, so a
    /// change to `next` that is not mirrored here fails.
    const ALLOWED: &[(TaskStatus, TaskStatus)] = &[
        (Init, InBackup),
        (Init, Fail),
        (Init, Cancelled),
        (Throttling, Init),
        (Throttling, RollBackInit),
        (Throttling, Cancelled),
        (WaitApproval, Init),
        (WaitApproval, Throttling),
        (WaitApproval, Cancelled),
        (InBackup, BackedUp),
        (InBackup, BackupFail),
        (InBackup, Cancelled),
        (BackedUp, Repairing),
        (BackedUp, RepairFail),
        (BackedUp, Cancelled),
        (Repairing, RepairSuccess),
        (Repairing, RepairFail),
        (RepairSuccess, RepairSuccessVerifying),
        (RepairSuccessVerifying, RepairSuccessVerified),
        (RepairSuccessVerifying, RepairSuccessUnverified),
        (RollBackInit, RollBacking),
        (RollBackInit, RollBackFail),
        (RollBacking, RollBacked),
        (RollBacking, RollBackFail),
        (RollBacked, RollBackVerifying),
        (RollBackVerifying, RollBackVerified),
        (RollBackVerifying, RollBackUnverified),
    ];

    #[test]
    fn failure_thresholds_parse_strictly_and_count_or_take_a_share() {
        assert_eq!(FailureThreshold::parse("3"), Some(FailureThreshold::Count(3)));
        assert_eq!(FailureThreshold::parse("10%"), Some(FailureThreshold::Percent(10)));
        for bad in ["0", "0%", "101%", "-1", "+3", "1.5", "%", "", "3 %", "ten"] {
            assert_eq!(FailureThreshold::parse(bad), None, "{bad:?}");
        }
        assert!(!FailureThreshold::Count(2).reached(1, 10) && FailureThreshold::Count(2).reached(2, 10));
        assert!(!FailureThreshold::Percent(50).reached(1, 4) && FailureThreshold::Percent(50).reached(2, 4));
        assert!(!FailureThreshold::Percent(1).reached(0, 4), "no failure never stops a root");
        assert_eq!(
            FailureThreshold::parse(&FailureThreshold::Percent(10).as_string()),
            Some(FailureThreshold::Percent(10))
        );
    }

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        for &from in TaskStatus::ALL {
            for &to in TaskStatus::ALL {
                assert_eq!(from.can_move_to(to), ALLOWED.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn every_failure_path_walks_the_table_to_a_terminal_status() {
        for &s in TaskStatus::ALL {
            let path = s.failure_path();
            let mut at = s;
            for &step in path {
                assert!(at.can_move_to(step), "{s}: {at} -> {step} is not an edge");
                at = step;
            }
            let runnable = !s.is_terminal()
                && !matches!(s, TaskStatus::Throttling | TaskStatus::WaitApproval | TaskStatus::RepairReExecute);
            assert_eq!(!path.is_empty(), runnable, "{s} has a failure path exactly when a worker can run it");
            assert!(path.is_empty() || at.is_terminal(), "{s} ends in {at}, not terminal");
        }
    }

    #[test]
    fn run_codes_are_the_api_s_and_round_trip() {
        for &s in RunStatus::ALL {
            assert_eq!(RunStatus::from_code(s.code()), Some(s));
        }
        for &s in RunDetailStatus::ALL {
            assert_eq!(RunDetailStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(RunStatus::ALL.iter().map(|s| s.code()).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(RunDetailStatus::ALL.iter().map(|s| s.code()).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!((RunStatus::from_code(4), RunDetailStatus::from_code(5)), (None, None));
    }

    #[test]
    fn terminal_statuses_have_no_way_out_and_others_reach_one() {
        for &s in TaskStatus::ALL {
            if s.is_terminal() {
                assert!(s.next().is_empty(), "{s} is terminal but has edges");
            }
        }
        // Every non-terminal status that a task can enter reaches a terminal status.
        for start in [Init, RollBackInit, Throttling] {
            let mut seen = vec![start];
            let mut i = 0;
            while i < seen.len() {
                for &n in seen[i].next() {
                    if !seen.contains(&n) {
                        seen.push(n);
                    }
                }
                i += 1;
            }
            for s in &seen {
                if !s.is_terminal() {
                    assert!(!s.next().is_empty(), "{s} is a dead end");
                }
            }
            assert!(seen.iter().any(|s| s.is_terminal()));
        }
    }

    #[test]
    fn repair_and_rollback_graphs_never_meet() {
        let repair = [Init, InBackup, BackedUp, Repairing, RepairSuccess, RepairSuccessVerifying];
        for s in repair {
            for n in s.next() {
                assert!(!n.as_str().starts_with("ROLL_BACK"), "{s} -> {n}");
            }
        }
    }

    #[test]
    fn wire_names_round_trip() {
        for &s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
            assert!(!s.show_name(Lang::Zh).is_empty());
            assert!(!s.show_name(Lang::En).is_empty());
        }
        assert_eq!(TaskStatus::parse("init"), None);
    }
}
