//! OpenVPN management interfaces (the processes are `crate::daemon`s): short exchanges
//! ([`management`]), and the agent's held connections ([`owner`]) that also hear real-time
//! notifications ([`notify`]).

pub mod management;
pub mod notify;
pub mod owner;
