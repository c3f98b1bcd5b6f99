//! Board profiles: parsing and validation (being written).
