//! The command line's parts: settings as flags, and the commands beyond `serve`.

pub(crate) mod policy;
pub(crate) mod replay;
pub(crate) mod settings;
