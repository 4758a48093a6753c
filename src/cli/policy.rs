//! `riskgate policy check`.

use std::path::Path;
use std::process::ExitCode;

use riskgate::policy::{Limits, Runtime};

/// Exit code when a policy is invalid.
pub(crate) const EXIT_INVALID: u8 = 1;

/// Compiles a policy file: exit 0 when valid, [`EXIT_INVALID`] when not.
pub(crate) fn check(file: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let name = file.file_stem().unwrap_or_default().to_string_lossy();
    let runtime = Runtime::new(Limits::default());
    match runtime.compile(&name, &file.display().to_string(), &source) {
        Ok(policy) => {
            let r = policy.reference();
            println!("{}: ok ({} {})", file.display(), r.name, r.version);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}
