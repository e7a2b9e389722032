//! Whether to colour what people read: `--color auto|always|never`, `NO_COLOR` and `TERM=dumb`.
//!
//! `always` and `never` win; `auto` colours a terminal unless `NO_COLOR` is set to anything
//! but the empty string (no-color.org) or `TERM` is `dumb`.

use std::io::IsTerminal;
use std::sync::OnceLock;

pub use clap::ColorChoice;

static CHOICE: OnceLock<ColorChoice> = OnceLock::new();

/// Records the command line's choice; call once, before anything is printed.
pub fn init(choice: ColorChoice) {
    let _ = CHOICE.set(choice);
}

/// The decision for a stream that is (or is not) a terminal.
pub fn decide(choice: ColorChoice, no_color: Option<&str>, term: Option<&str>, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb"),
    }
}

/// Whether to colour stderr, where diagnostics go.
pub fn color_stderr() -> bool {
    let choice = CHOICE.get().copied().unwrap_or(ColorChoice::Auto);
    let no_color = std::env::var("NO_COLOR").ok();
    let term = std::env::var("TERM").ok();
    decide(choice, no_color.as_deref(), term.as_deref(), std::io::stderr().is_terminal())
}

/// The choice given by `--color` in raw arguments, found before clap parses them, so that
/// clap's own help and errors follow it too. The last one wins, as clap does; `--` ends options.
pub fn choice_in_args<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> ColorChoice {
    let mut choice = ColorChoice::Auto;
    let mut args = args.iter().map(|a| a.as_ref().to_string_lossy());
    while let Some(arg) = args.next() {
        let value = match arg.as_ref() {
            "--" => break,
            "--color" => args.next().map(|v| v.into_owned()),
            a => a.strip_prefix("--color=").map(str::to_string),
        };
        choice = match value.as_deref() {
            Some("always") => ColorChoice::Always,
            Some("never") => ColorChoice::Never,
            Some("auto") => ColorChoice::Auto,
            _ => choice,
        };
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choices_win_and_auto_follows_the_environment() {
        use ColorChoice::*;
        assert!(decide(Always, Some("1"), Some("dumb"), false));
        assert!(!decide(Never, None, Some("xterm"), true));
        assert!(decide(Auto, None, Some("xterm-256color"), true));
        assert!(!decide(Auto, None, Some("xterm"), false), "not a terminal");
        assert!(!decide(Auto, Some("1"), Some("xterm"), true), "NO_COLOR");
        assert!(decide(Auto, Some(""), Some("xterm"), true), "an empty NO_COLOR is unset");
        assert!(!decide(Auto, None, Some("dumb"), true), "TERM=dumb");
    }

    #[test]
    fn the_color_option_is_found_before_parsing() {
        let c = |args: &[&str]| format!("{:?}", choice_in_args(args));
        assert_eq!(c(&["meshwork", "check", "--color", "never", "f"]), "Never");
        assert_eq!(c(&["meshwork", "--color=always", "check"]), "Always");
        assert_eq!(c(&["meshwork", "--color=always", "--color", "never"]), "Never");
        assert_eq!(c(&["meshwork", "check", "--", "--color=never"]), "Auto");
        assert_eq!(c(&["meshwork", "--color"]), "Auto");
    }
}
