//! `meshwork codes [CODE]`: every diagnostic code with its summary, or one code explained.

use std::process::ExitCode;

use meshwork_compiler::codes::Code;

use crate::input::CliError;

pub fn run(code: Option<&str>) -> Result<ExitCode, CliError> {
    match code {
        None => {
            for c in Code::ALL {
                println!("{:<40} {}", c.name(), c.summary());
            }
        }
        Some(name) => {
            let c = Code::from_name(name)
                .ok_or_else(|| CliError::Message(format!("no diagnostic code `{name}` (see `meshwork codes`)")))?;
            println!("{}\n\n{}\n\n{}", c.name(), c.summary(), c.explanation());
        }
    }
    Ok(ExitCode::SUCCESS)
}
