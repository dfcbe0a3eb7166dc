//! A message: one validated measurement, as every ingest format decodes it (`ingest/`) and the store takes it
//! in (`store/shard/admit.rs`): its tag and the record to store under it.

use crate::record::Record;

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub tag: String,
    pub record: Record,
}
