//! The names of the temporary card processes, as the audit log records them.

use crate::catalog::ProcessName;

pub const REQUEST: ProcessName = ProcessName::new("TempCardsProcRequest");
pub const ABORT: ProcessName = ProcessName::new("TempCardsProcAbort");
pub const ISSUE_MULTIPLE: ProcessName = ProcessName::new("TempCardsBoProcIssueMultiple");
pub const ASSIGN: ProcessName = ProcessName::new("TempCardsProcAssign");
pub const WITHDRAW: ProcessName = ProcessName::new("TempCardsProcWithdraw");
pub const EXTEND: ProcessName = ProcessName::new("TempCardsProcExtend");
pub const LOCK: ProcessName = ProcessName::new("TempCardsProcLock");
pub const EXPIRE: ProcessName = ProcessName::new("TempCardsSysExpire");
