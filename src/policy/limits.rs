//! The sandbox limits every policy call runs under.

use serde::{Deserialize, Serialize};

/// Sandbox limits applied to every policy call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Operations per call before the policy is stopped (the policy's time budget).
    pub max_operations: u64,
    /// Nested function calls.
    pub max_call_levels: usize,
    /// Longest string a script may build, in bytes.
    pub max_string_size: usize,
    /// Largest array a script may build.
    pub max_array_size: usize,
    /// Largest map a script may build.
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 100_000,
            max_call_levels: 32,
            max_string_size: 16 * 1024,
            max_array_size: 1024,
            max_map_size: 256,
        }
    }
}
