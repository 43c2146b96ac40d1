//! Generated protobuf types and gRPC stubs. Nothing here but the wire format:
//! each binary converts these into its own domain types at its edge.
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("fjord.v1");
}

pub use v1::*;
