//! HTTP/1.1: `parse` turns bytes into request heads and bodies (pure), `response` writes replies into a
//! reused buffer (pure), `conn` is the glommio connection loop that ties them to a socket.
pub mod conn;
pub mod parse;
pub mod response;
