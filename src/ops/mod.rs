//! Operations: loading configuration and policy from disk, policy reload, the audit log, and
//! the file descriptor budget.

pub mod audit;
pub mod fds;
pub mod load;
pub mod reload;
pub mod shadow;
