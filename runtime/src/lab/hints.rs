//! What to try next once a lab is up, with the lab's real names and absolute paths: the drill
//! that works on this topology (failover needs a second controller; a lone controller can only
//! be killed and brought back; a compute node gets the IPsec fault drill).

use std::path::Path;

use super::{Lab, Record, locations};

/// The example with several controllers, beside `file` if it is there.
const FAILOVER_EXAMPLE: &str = "three-controllers.kdl";

/// The controller a failover drill should kill: the one holding the most clients (ties: the
/// first in the file).
fn busiest(lab: &Lab, record: &Record) -> Option<String> {
    let located = locations(lab, record);
    let live = record.layout.controllers.iter().filter(|c| !record.killed.contains(&c.name));
    let mut best: Option<(usize, &str)> = None;
    for c in live {
        let n = located.values().filter(|(on, _)| on == &c.name).count();
        if best.is_none_or(|(m, _)| n > m) {
            best = Some((n, &c.name));
        }
    }
    best.map(|(_, name)| name.to_string())
}

/// `(command, comment)` lines: status, test, the drill that works here, down.
pub fn next_steps(lab: &Lab, record: &Record, exe: &Path) -> Vec<(String, String)> {
    let state = lab.state_dir().display().to_string();
    let cmd = |verb: &str| format!("{} lab {verb} --state-dir {state}", exe.display());
    let mut out = vec![
        (cmd("status"), "the mesh, where each client sits".to_string()),
        (cmd("test"), "every `expect` with real packets".to_string()),
    ];
    let controllers: Vec<&str> = record.layout.controllers.iter().map(|c| c.name.as_str()).collect();
    match controllers.as_slice() {
        [] => {}
        [only] => {
            let example = record.file.parent().map(|d| d.join(FAILOVER_EXAMPLE)).filter(|p| p.exists());
            out.push((cmd(&format!("kill {only}")), format!("{only} dies as a host does")));
            out.push((
                cmd(&format!("restore {only} --wait")),
                match example {
                    Some(e) => format!(
                        "timed until its clients are back ({only} is the only controller; a failover drill needs two: {})",
                        e.display()
                    ),
                    None => format!("timed until its clients are back ({only} is the only controller)"),
                },
            ));
        }
        _ => {
            let victim = busiest(lab, record).unwrap_or_else(|| controllers[0].to_string());
            let others: Vec<&str> = controllers.iter().copied().filter(|c| *c != victim).collect();
            out.push((
                cmd(&format!("kill {victim} --wait")),
                format!("failover drill: {victim}'s clients move to {}; timed", others.join(" or ")),
            ));
            out.push((cmd(&format!("restore {victim} --wait")), format!("{victim} back, timed")));
        }
    }
    if let Some(n) = record.nodes.nodes.first() {
        out.push((
            cmd(&format!("kill --ipsec {} --wait", n.name)),
            format!("IPsec fault drill on node {}: traffic stops without plaintext, its agent brings it back", n.name),
        ));
    }
    out.push((cmd("down"), "removes everything the lab made".to_string()));
    out
}

/// The steps as text, commands aligned, comments after `#`.
pub fn text(steps: &[(String, String)]) -> String {
    let width = steps.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut s = String::from("next:\n");
    for (c, why) in steps {
        s += &format!("  {c:width$}  # {why}\n");
    }
    s
}
