//! The library's settings as global flags, each also read from its environment variable.
//!
//! The list comes from [`riskgate::config::SETTINGS`], so a setting added to the library is
//! a flag, an environment variable and a line of `--help` at once.

use clap::error::ErrorKind;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use riskgate::config::{SETTINGS, Settings};

/// The settings given by flags and the environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct SettingsArgs(pub Settings);

impl FromArgMatches for SettingsArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut settings = Settings::default();
        for info in SETTINGS {
            if let Some(value) = matches.get_one::<String>(info.key) {
                settings.set(info.key, value).map_err(|e| {
                    let flag = info.key.replace('_', "-");
                    let message = format!("invalid value for `--{flag}` ({}): {e}\n", info.env);
                    clap::Error::raw(ErrorKind::ValueValidation, message)
                })?;
            }
        }
        Ok(Self(settings))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let given = Self::from_arg_matches(matches)?;
        self.0 = given.0.or(std::mem::take(&mut self.0));
        Ok(())
    }
}

impl Args for SettingsArgs {
    fn augment_args(command: Command) -> Command {
        command.args(SETTINGS.iter().map(|info| {
            let help: Vec<&str> = info.help.lines().map(str::trim).collect();
            let help = help.join(" ");
            Arg::new(info.key)
                .long(info.key.replace('_', "-"))
                .value_name(info.key.to_uppercase())
                .env(info.env)
                .hide_env_values(info.secret)
                // `replay --policy` names the policy to replay with; the setting is given
                // before the subcommand (`riskgate --policy strict serve`) or by its variable.
                .global(info.key != "policy")
                .help(help.trim_end_matches('.').to_owned())
        }))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}
