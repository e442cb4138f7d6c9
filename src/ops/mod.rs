//! Operations: loading configuration and policy from disk, policy reload, the audit log, the
//! log filter in force, the file descriptor budget, and the memory estimate.

pub mod audit;
pub mod fds;
pub mod load;
pub mod logging;
pub mod reload;
pub mod shadow;
pub mod sizing;
