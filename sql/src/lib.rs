//! SQL: parsing, catalog, row encoding, planning and execution over transactional KV.
