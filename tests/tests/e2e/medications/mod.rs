//! The medication record on the real servers: allergies, prescribing with
//! its safety checks, issues and reviews through the gRPC API and the read
//! models; the patient gate; bad input appends nothing; every event audited.

mod gate;
mod golden;
mod scenarios;

use carelog_tests::assert::{reason, violated_fields as fields};
