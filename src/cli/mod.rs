//! The command line's parts: settings as flags, and the commands beyond `serve`.

pub mod policy;
pub mod replay;
pub mod settings;
