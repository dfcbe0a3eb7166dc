//! Component benchmarks (criterion): the request-head parser, decoding one message, and the as-of query
//! over one hour of a tag at 100 records/s (360k records, 1000 samples). Run: `cargo bench --bench components`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tickcore::http::parse::parse_head;
use tickcore::ingest::decode::{decode_body, decode_one};
use tickcore::query::{asof, render};
use tickcore::record::Record;

const HEAD: &[u8] = b"POST /save HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nContent-Type: application/json\r\nContent-Length: 152\r\n\r\n";
const MSG: &[u8] = br#"{"time":1795536000123456789,"tag":"t42","values":[10.512345,20.512345,30.512345,40.512345,50.512345,60.512345,70.512345,80.512345,90.512345,100.512345]}"#;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes(HEAD.len() as u64));
    g.bench_function("parse_head", |b| {
        b.iter(|| parse_head(black_box(HEAD), 16 << 10, 16 << 20))
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(MSG.len() as u64));
    g.bench_function("one_message", |b| b.iter(|| decode_one(black_box(MSG))));
    let bulk: Vec<u8> = (0..1000)
        .flat_map(|_| MSG.iter().copied().chain(std::iter::once(b'\n')))
        .collect();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("ndjson_1000", |b| {
        let mut out = Vec::with_capacity(1000);
        b.iter(|| {
            out.clear();
            decode_body(black_box(&bulk), &mut out)
        })
    });
    let mut array = vec![b'['];
    for i in 0..1000 {
        if i > 0 {
            array.push(b',');
        }
        array.extend_from_slice(MSG);
    }
    array.push(b']');
    g.bench_function("depth_check_array_1000", |b| {
        b.iter(|| tickcore::ingest::depth::check(black_box(&array)))
    });
    g.bench_function("array_1000", |b| {
        let mut out = Vec::with_capacity(1000);
        b.iter(|| {
            out.clear();
            decode_body(black_box(&array), &mut out)
        })
    });
    g.finish();
}

fn query(c: &mut Criterion) {
    let start = 1_795_532_400_000_000_000i64;
    let hour = 3_600_000_000_000i64;
    let recs: Vec<Record> = (0..360_000)
        .map(|i| Record {
            time: start + i * 10_000_000,
            values: [i as f64 * 0.001; 10],
        })
        .collect();
    let runs: Vec<&[Record]> = vec![&recs];
    let mut g = c.benchmark_group("query");
    g.bench_function("asof_1000_of_360k", |b| {
        b.iter(|| {
            let mut n = 0;
            asof::sample(
                &runs,
                start,
                start + hour,
                1000,
                asof::Ties::LastReceived,
                |_, r| n += r.is_some() as usize,
            );
            n
        })
    });
    g.bench_function("asof_and_render_1000_of_360k", |b| {
        let mut out = Vec::with_capacity(200_000);
        b.iter(|| {
            out.clear();
            render::api_head(&mut out, "t0", start, start + hour);
            let mut first = true;
            asof::sample(
                &runs,
                start,
                start + hour,
                1000,
                asof::Ties::LastReceived,
                |t, r| {
                    render::api_sample(&mut out, first, t, r.as_ref());
                    first = false;
                },
            );
            render::api_tail(&mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, decode, query);
criterion_main!(benches);
