//! loadgen: the specification's workload as one command. `dist` draws tags, `schedule` plans the send
//! times, `message` renders messages, `client` speaks HTTP/1.1, `stats` keeps the histograms and verdicts,
//! `run` drives producer, query clients and the lag probe, `report` draws the HTML report's plots.
pub mod client;
pub mod dist;
pub mod message;
pub mod report;
pub mod run;
pub mod schedule;
pub mod stats;
