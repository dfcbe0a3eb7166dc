//! HTTP/1.1: `parse` turns bytes into request heads and bodies (pure), `response` writes replies into a
//! reused buffer (pure), `conn` is the glommio connection loop that ties them to a socket, `deadline` its
//! timeouts, and `service` the narrow interface through which the loop hands requests to the engine
//! (`server/routes.rs`) and gets typed answers back. Nothing here imports `server` or `store`.
pub mod conn;
pub mod deadline;
pub mod parse;
pub mod response;
pub mod service;
