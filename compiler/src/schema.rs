//! JSON Schema (draft 2020-12) of the TOML form of a topology, generated from the grammar tables,
//! so that the schema, the TOML front end and the shape checker cannot disagree.
//!
//! The mapping is the one `syntax::toml` reads:
//!
//! * a node is a key; a node may be written as its first argument alone (`topology = "acme"`,
//!   `peering = "full"`, `lan = ["10.0.0.0/16"]`) when that argument alone makes a complete node,
//!   that is when nothing else it has is required; otherwise it is a table;
//! * a repeatable node is an array whose elements take either form;
//! * positional arguments, properties and child nodes are keys of the node's table;
//! * tagged children (firewall `allow`/`deny`) are one array of tables (`rule`) whose tag key
//!   (`action`) names the node.
//!
//! Every object forbids unknown keys. Objects are built with their keys in sorted order, so the
//! output is the same whether or not serde_json keeps insertion order.

use serde_json::{Map, Value as Json, json};

use crate::grammar::{self, NodeSpec, Ty, Value};
use crate::values::MAX_NAME_LEN;

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// One decimal octet, 0..=255, without leading zeros (as Rust's `Ipv4Addr` parses it).
const OCTET: &str = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const PREFIX: &str = "(?:3[0-2]|[12]?[0-9])";

/// The JSON Schema of a topology file's TOML form.
pub fn json_schema() -> Json {
    let mut defs = Map::new();
    let top = table(
        "meshwork topology file in TOML form; every key is a top-level node.",
        &[],
        &[],
        grammar::TOP,
        "",
        &mut defs,
    );
    let mut root = match top {
        Json::Object(map) => map,
        _ => unreachable!("table() builds an object"),
    };
    root.insert("$schema".into(), DRAFT.into());
    root.insert("title".into(), "meshwork topology (TOML form)".into());
    root.insert("$defs".into(), Json::Object(defs));
    sorted(Json::Object(root))
}

/// The object schema of a node's table: its arguments, properties and children as keys.
fn table(
    doc: &str,
    args: &[Value],
    props: &[Value],
    children: &[&NodeSpec],
    path: &str,
    defs: &mut Map<String, Json>,
) -> Json {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for v in args.iter().chain(props) {
        properties.insert(v.key.into(), value(v));
        if v.required {
            required.push(v.key);
        }
    }
    // A later argument without an earlier, optional one would land in the wrong slot.
    let mut dependent = Map::new();
    for pair in args.windows(2) {
        if !pair[0].required {
            dependent.insert(pair[1].key.into(), json!([pair[0].key]));
        }
    }
    let mut contains = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for child in children {
        let key = child.toml_key();
        if done.contains(&key) {
            continue;
        }
        done.push(key);
        let group: Vec<&NodeSpec> = children.iter().copied().filter(|c| c.toml_key() == key).collect();
        let schema = match child.toml_tagged {
            Some((_, tag)) => {
                let name = def_name(path, key);
                let entry = tagged(&group, tag, &name, defs);
                defs.insert(name.clone(), entry);
                for spec in group.iter().filter(|s| s.required) {
                    contains.push(json!({ "contains": { "properties": { tag: { "const": spec.name } } } }));
                }
                let mut array = json!({
                    "description": format!("{}; each entry's `{tag}` is one of: {}", plural(&group), names(&group)),
                    "type": "array",
                    "items": { "$ref": format!("#/$defs/{name}") },
                });
                if group.iter().any(|s| s.required) {
                    array["minItems"] = 1.into();
                }
                array
            }
            None => node(child, path, defs),
        };
        properties.insert(key.into(), schema);
        if group.iter().any(|s| s.required) {
            required.push(key);
        }
    }
    let mut schema = json!({
        "description": doc,
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    if !dependent.is_empty() {
        schema["dependentRequired"] = Json::Object(dependent);
    }
    if !contains.is_empty() {
        schema["allOf"] = Json::Array(contains);
    }
    schema
}

/// The schema of the value under a node's key: its table (in `$defs`), or its first argument
/// alone where that makes a complete node, or an array of those for a repeatable node.
fn node(spec: &NodeSpec, path: &str, defs: &mut Map<String, Json>) -> Json {
    let name = def_name(path, spec.name);
    let def = table(spec.doc, spec.args, spec.props, spec.children, &name, defs);
    defs.insert(name.clone(), def);
    let reference = json!({ "$ref": format!("#/$defs/{name}") });
    let one = match scalar_form(spec) {
        Some(arg) => json!({ "anyOf": [value(arg), reference] }),
        None => reference,
    };
    if spec.many {
        let mut array = json!({ "description": spec.doc, "type": "array", "items": one });
        if spec.required {
            array["minItems"] = 1.into();
        }
        array
    } else {
        let mut one = one;
        one["description"] = spec.doc.into();
        one
    }
}

/// The argument a node may be written as on its own: its first, when nothing else is required.
fn scalar_form(spec: &NodeSpec) -> Option<&Value> {
    let (first, rest) = spec.args.split_first()?;
    let rest_required = rest.iter().chain(spec.props).any(|v| v.required) || spec.children.iter().any(|c| c.required);
    (!rest_required).then_some(first)
}

/// One entry of a tagged array: the tag picks the node. Entries of nodes with the same keys share
/// one schema with the tag as an enum; otherwise each node has its own branch.
fn tagged(group: &[&NodeSpec], tag: &str, path: &str, defs: &mut Map<String, Json>) -> Json {
    let tag_value = |choices: Json| json!({ "description": format!("which rule: {}", names(group)), "type": "string", "enum": choices });
    let with_tag = |mut schema: Json, choices: Json| {
        schema["properties"][tag] = tag_value(choices);
        let mut required = vec![Json::from(tag)];
        if let Some(Json::Array(rest)) = schema.get("required") {
            required.extend(rest.iter().cloned());
        }
        schema["required"] = Json::Array(required);
        schema
    };
    let schemas: Vec<Json> =
        group.iter().map(|s| table(s.doc, s.args, s.props, s.children, &def_name(path, s.name), defs)).collect();
    let shape = |s: &Json| {
        let mut s = s.clone();
        s.as_object_mut().map(|m| m.remove("description"));
        s
    };
    if schemas.iter().all(|s| shape(s) == shape(&schemas[0])) {
        let docs: Vec<String> = group.iter().map(|s| format!("{}: {}", s.name, s.doc)).collect();
        let mut merged = with_tag(schemas[0].clone(), json!(group.iter().map(|s| s.name).collect::<Vec<_>>()));
        merged["description"] = docs.join(" ").into();
        merged
    } else {
        let branches: Vec<Json> =
            group.iter().zip(schemas).map(|(s, schema)| with_tag(schema, json!([s.name]))).collect();
        json!({ "oneOf": branches })
    }
}

/// The schema of one argument or property.
fn value(v: &Value) -> Json {
    let mut schema = match v.ty {
        Ty::String | Ty::Tags | Ty::Host | Ty::Selector => json!({ "type": "string" }),
        Ty::Name => json!({ "type": "string", "pattern": name_pattern() }),
        Ty::Integer { min, max } => json!({ "type": "integer", "minimum": min as i64, "maximum": max as i64 }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Ip => json!({ "type": "string", "format": "ipv4" }),
        Ty::Cidr => json!({ "type": "string", "pattern": format!("^(?:{OCTET}\\.){{3}}{OCTET}/{PREFIX}$") }),
        Ty::Net => json!({ "type": "string", "pattern": format!("^(?:{OCTET}\\.){{3}}{OCTET}(?:/{PREFIX})?$") }),
        // 1-15 printable ASCII characters other than '"' and '/'.
        Ty::Interface => json!({ "type": "string", "pattern": "^[!#-.0-~]{1,15}$" }),
        Ty::Port => json!({
            "anyOf": [
                { "type": "integer", "minimum": 1, "maximum": 65535 },
                { "type": "string", "pattern": port_pattern() },
            ]
        }),
        Ty::Choice(choices) => json!({ "type": "string", "enum": choices }),
        Ty::Mac => json!({ "type": "string", "pattern": "^[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}$" }),
        Ty::IfAddr => json!({ "type": "string", "pattern": format!("^(?:{OCTET}\\.){{3}}{OCTET}(?:/{PREFIX})?$") }),
        Ty::RuleName => {
            json!({ "type": "string", "pattern": format!("^[A-Za-z0-9_]{{1,{}}}[A-Za-z_]$", MAX_NAME_LEN - 1) })
        }
        Ty::Vni => json!({ "type": "integer", "minimum": 1, "maximum": 16_777_215 }),
    };
    schema["description"] = v.doc.into();
    schema
}

fn name_pattern() -> String {
    format!("^[A-Za-z0-9][A-Za-z0-9._-]{{0,{}}}$", MAX_NAME_LEN - 1)
}

/// A port, a range `LOW-HIGH` or `fwset:NAME`; the numbers' range is checked by the compiler.
fn port_pattern() -> String {
    let number = "\\s*\\+?[0-9]+\\s*";
    let name = name_pattern();
    format!("^(?:{number}(?:-{number})?|fwset:{})$", &name[1..name.len() - 1])
}

fn def_name(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn names(group: &[&NodeSpec]) -> String {
    group.iter().map(|s| format!("\"{}\"", s.name)).collect::<Vec<_>>().join(", ")
}

fn plural(group: &[&NodeSpec]) -> String {
    let key = group[0].toml_key();
    format!("The `{}` nodes in order, as `{key}` entries", group.iter().map(|s| s.name).collect::<Vec<_>>().join("`/`"))
}

/// `value` with every object's keys in sorted order.
fn sorted(value: Json) -> Json {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(String, Json)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Json::Array(items) => Json::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_deterministic_and_closed() {
        let schema = json_schema();
        assert_eq!(schema, json_schema());
        assert_eq!(schema["title"], "meshwork topology (TOML form)");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["topology"]));
        for (name, def) in schema["$defs"].as_object().unwrap() {
            assert_eq!(def.get("additionalProperties"), Some(&json!(false)), "{name}");
        }
    }

    #[test]
    fn firewall_rules_are_tagged() {
        let schema = json_schema();
        let rule = &schema["$defs"]["firewall.rule"];
        assert_eq!(rule["properties"]["action"]["enum"], json!(["allow", "deny"]));
        assert_eq!(rule["required"], json!(["action", "from", "to"]));
    }

    #[test]
    fn port_pattern_is_anchored() {
        let p = port_pattern();
        assert!(p.starts_with("^(?:") && p.ends_with(")$"), "{p}");
        assert!(p.contains("fwset:[A-Za-z0-9][A-Za-z0-9._-]{0,63}"), "{p}");
    }
}
