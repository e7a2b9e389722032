//! The raw document: what both front ends (KDL and TOML) produce before any meaning is given
//! to it. It is KDL's shape (nodes with arguments, properties and children), with a byte span
//! on everything, so that one shape checker and one lowering serve both languages.

pub mod depth;
pub mod kdl;
pub mod toml;

use crate::source::Span;

#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    String(String),
    Integer(i128),
    Float(f64),
    Bool(bool),
    Null,
    /// A TOML array, table or datetime where one value was expected; holds its kind.
    Other(&'static str),
}

impl Scalar {
    /// What the value is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::String(_) => "a string",
            Scalar::Integer(_) => "an integer",
            Scalar::Float(_) => "a float",
            Scalar::Bool(_) => "a boolean",
            Scalar::Null => "null",
            Scalar::Other(kind) => kind,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawValue {
    pub value: Scalar,
    /// The value itself (with its quotes), not its key.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawProp {
    pub key: String,
    pub key_span: Span,
    pub value: RawValue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawNode {
    pub name: String,
    pub name_span: Span,
    /// The whole node, children included.
    pub span: Span,
    pub args: Vec<RawValue>,
    pub props: Vec<RawProp>,
    pub children: Vec<RawNode>,
}

impl RawNode {
    pub fn prop(&self, key: &str) -> Option<&RawValue> {
        // The first one counts; the shape checker reports repetitions.
        self.props.iter().find(|p| p.key == key).map(|p| &p.value)
    }
    pub fn arg(&self, index: usize) -> Option<&RawValue> {
        self.args.get(index)
    }
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a RawNode> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    pub fn child<'a>(&'a self, name: &'a str) -> Option<&'a RawNode> {
        self.children_named(name).next()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawDoc {
    pub nodes: Vec<RawNode>,
}
