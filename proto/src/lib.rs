//! carelog's contracts: the gRPC services and the event schemas, compiled once
//! from `proto/carelog/<context>/v1/*.proto`.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Shared envelope and value messages.
pub mod kernel {
    pub mod v1 {
        tonic::include_proto!("carelog.kernel.v1");
    }
}

/// Read access to patient records (`RecordAccessed`, ADR 0018).
pub mod access {
    pub mod v1 {
        tonic::include_proto!("carelog.access.v1");
    }
}

/// The demographics context: service and events.
pub mod demographics {
    pub mod v1 {
        tonic::include_proto!("carelog.demographics.v1");
    }
}

/// The consultations context: encounters, topics and entries.
pub mod consultations {
    pub mod v1 {
        tonic::include_proto!("carelog.consultations.v1");
    }
}

/// The sharing context: organisation groups and sharing agreements.
pub mod sharing {
    pub mod v1 {
        tonic::include_proto!("carelog.sharing.v1");
    }
}

/// The medications context: allergies, authorisations and issues.
pub mod medications {
    pub mod v1 {
        tonic::include_proto!("carelog.medications.v1");
    }
}

/// The tasks context: FHIR R4 Task work lists.
pub mod tasks {
    pub mod v1 {
        tonic::include_proto!("carelog.tasks.v1");
    }
}

/// The encoded file descriptor set of every carelog proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/carelog_descriptor.bin"));

/// The verifiable audit log: checkpoints and proofs.
pub mod audit {
    pub mod v1 {
        tonic::include_proto!("carelog.audit.v1");
    }
}
