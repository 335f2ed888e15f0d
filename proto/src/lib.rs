//! carelog's contracts: the gRPC services and the event schemas, compiled once
//! from `proto/carelog/<context>/v1/*.proto`.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Shared envelope and value messages.
pub mod kernel {
    pub mod v1 {
        tonic::include_proto!("carelog.kernel.v1");
    }
}

/// The demographics context: service and events.
pub mod demographics {
    pub mod v1 {
        tonic::include_proto!("carelog.demographics.v1");
    }
}

/// The encoded file descriptor set of every carelog proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/carelog_descriptor.bin"));
