//! Cross-core forwarding. Every core joins one glommio `channel_mesh` (capacity 1024: small capacities
//! have deadlocked, glommio #555). A request for a tag owned by another core travels there as a
//! [`Forward`]; the answer comes back on a `futures` oneshot or bounded mpsc channel, whose wakers glommio
//! supports across executors. A handler never waits on a peer while holding a local borrow.

use futures::channel::{mpsc, oneshot};

use crate::message::Message;
use crate::query::params::Window;
use crate::store::StoreError;

pub const MESH_CAPACITY: usize = 1024;

pub use crate::store::shard::read::ExportChunk;

pub enum Forward {
    Save(Vec<Message>, oneshot::Sender<Result<(), StoreError>>),
    /// Answer: the JSON body, `None` for an unknown tag, or an I/O error text.
    Api(Window, oneshot::Sender<Result<Option<Vec<u8>>, StoreError>>),
    Export(Window, mpsc::Sender<ExportChunk>),
    /// A `/metrics` scrape asks each core for its counters.
    Metrics(oneshot::Sender<crate::server::metrics::Snapshot>),
    /// `/tags` asks each core for its tags and their record counts.
    Tags(oneshot::Sender<Vec<(String, u64)>>),
}
