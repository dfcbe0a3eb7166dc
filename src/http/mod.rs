//! HTTP/1.1: `parse` turns bytes into request heads and bodies (pure), `response` writes replies into a
//! reused buffer (pure), `conn` is the glommio connection loop that ties them to a socket, `deadline` its
//! timeouts.
pub mod conn;
pub mod deadline;
pub mod parse;
pub mod response;
