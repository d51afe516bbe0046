//! Spark's shuffle wire protocol as pure values: transport frames (`frame`), the shuffle
//! service's RPC payloads (`messages`) and the primitive encodings both use (`wire`).

pub mod frame;
pub mod messages;
pub mod wire;

pub use frame::Message;
pub use messages::{BlockTransferMessage, Cause, ExecutorShuffleInfo};
pub use wire::DecodeError;

#[cfg(test)]
mod tests;
