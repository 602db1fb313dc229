//! The part of the RESP key-value server that does not depend on the
//! runtime: the request parser, the keyspace, the commands, and a
//! connection's buffers ([`Session`]). Both servers in `main.rs` run this
//! code; only their reads and writes differ.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

/// Bytes a session reads at a time (its input buffer grows past this only
/// for a single request that is larger).
const READ_CHUNK: usize = 16 * 1024;

/// Refuse requests with more arguments than this (a bound on what one
/// header can make us reserve).
const MAX_ARGS: usize = 1 << 20;

/// Refuse bulk strings longer than this (Redis's `proto-max-bulk-len`).
const MAX_BULK: usize = 512 * 1024 * 1024;

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// One request of this many bytes; its arguments were put in `args`.
    Request(usize),
    /// The buffer holds only part of a request.
    Incomplete,
    /// The bytes are not RESP; the connection should be closed.
    Invalid(&'static str),
}

/// Parses the request at the start of `buf`: a RESP array of bulk strings
/// (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what clients send) or an inline
/// command (`PING\r\n`, what a person types). On [`Parsed::Request`],
/// `args` holds each argument's byte range in `buf` (an empty line is a
/// request with no arguments).
pub(crate) fn parse(buf: &[u8], args: &mut Vec<Range<usize>>) -> Parsed {
    args.clear();
    match buf.first() {
        None => Parsed::Incomplete,
        Some(b'*') => parse_array(buf, args),
        Some(_) => parse_inline(buf, args),
    }
}

fn parse_array(buf: &[u8], args: &mut Vec<Range<usize>>) -> Parsed {
    let (count, mut at) = match number_line(buf, 1) {
        Ok(Some(v)) => v,
        Ok(None) => return Parsed::Incomplete,
        Err(e) => return Parsed::Invalid(e),
    };
    // `*-1` (a null array) and `*0` carry no command.
    let Ok(count) = usize::try_from(count) else {
        return Parsed::Request(at);
    };
    if count > MAX_ARGS {
        return Parsed::Invalid("too many arguments");
    }
    for _ in 0..count {
        match buf.get(at) {
            None => return Parsed::Incomplete,
            Some(b'$') => {}
            Some(_) => return Parsed::Invalid("expected '$'"),
        }
        let (len, start) = match number_line(buf, at + 1) {
            Ok(Some(v)) => v,
            Ok(None) => return Parsed::Incomplete,
            Err(e) => return Parsed::Invalid(e),
        };
        let len = match usize::try_from(len) {
            Ok(len) if len <= MAX_BULK => len,
            _ => return Parsed::Invalid("invalid bulk length"),
        };
        let end = start + len;
        if buf.len() < end + 2 {
            return Parsed::Incomplete;
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Parsed::Invalid("bulk string not followed by CRLF");
        }
        args.push(start..end);
        at = end + 2;
    }
    Parsed::Request(at)
}

/// The decimal number on the line that starts at `from`, and where the
/// next line starts; `None` if the line is not complete yet.
fn number_line(buf: &[u8], from: usize) -> Result<Option<(i64, usize)>, &'static str> {
    let Some(rest) = buf.get(from..) else {
        return Ok(None);
    };
    let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
        // A number line has at most 20 characters; more without a CR is
        // not a number line.
        return if rest.len() > 21 {
            Err("header line too long")
        } else {
            Ok(None)
        };
    };
    match rest.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err("CR not followed by LF"),
    }
    let n = parse_i64(&rest[..cr]).ok_or("invalid number")?;
    Ok(Some((n, from + cr + 2)))
}

fn parse_inline(buf: &[u8], args: &mut Vec<Range<usize>>) -> Parsed {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > 64 * 1024 {
            Parsed::Invalid("inline request too long")
        } else {
            Parsed::Incomplete
        };
    };
    let line = &buf[..nl];
    let mut i = 0;
    while i < line.len() {
        if line[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && !line[i].is_ascii_whitespace() {
            i += 1;
        }
        args.push(start..i);
    }
    Parsed::Request(nl + 1)
}

/// A decimal `i64` (optional sign, digits only), as Redis's `string2ll`.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if negative {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

/// A stored value.
enum Value {
    Str(Vec<u8>),
    List(VecDeque<Vec<u8>>),
}

/// Independently locked parts of the keyspace.
const SHARDS: usize = 16;

type Shard = HashMap<Box<[u8]>, Value>;

/// The keyspace: [`SHARDS`] hash maps behind their own locks, so that
/// workers serving different keys rarely contend. A command holds one
/// shard's lock for its duration and never suspends while holding it (the
/// lock is a plain `std` mutex: nothing in a command waits).
pub(crate) struct Store {
    shards: Vec<Mutex<Shard>>,
}

impl Store {
    /// An empty keyspace.
    pub(crate) fn new() -> Store {
        Store {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let i = (h.finish() as usize) % SHARDS;
        // A panic while holding a shard cannot leave a map half-updated
        // in a way later commands would misread.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the request whose arguments are `args` (ranges in `buf`) and
/// appends its reply to `out`.
pub(crate) fn execute(store: &Store, buf: &[u8], args: &[Range<usize>], out: &mut Vec<u8>) {
    let arg = |i: usize| &buf[args[i].clone()];
    let Some(name) = args.first().map(|r| &buf[r.clone()]) else {
        return;
    };
    let is = |cmd: &str| name.eq_ignore_ascii_case(cmd.as_bytes());
    let argc = args.len();
    if is("PING") {
        match argc {
            1 => out.extend_from_slice(b"+PONG\r\n"),
            2 => bulk(out, arg(1)),
            _ => arity(out, name),
        }
    } else if is("ECHO") {
        if argc != 2 {
            return arity(out, name);
        }
        bulk(out, arg(1));
    } else if is("SET") {
        if argc != 3 {
            return arity(out, name);
        }
        set(store, arg(1), arg(2));
        out.extend_from_slice(b"+OK\r\n");
    } else if is("MSET") {
        if argc < 3 || argc % 2 == 0 {
            return arity(out, name);
        }
        for pair in args[1..].chunks(2) {
            set(store, &buf[pair[0].clone()], &buf[pair[1].clone()]);
        }
        out.extend_from_slice(b"+OK\r\n");
    } else if is("GET") {
        if argc != 2 {
            return arity(out, name);
        }
        match store.shard(arg(1)).get(arg(1)) {
            None => out.extend_from_slice(b"$-1\r\n"),
            Some(Value::Str(v)) => bulk(out, v),
            Some(Value::List(_)) => wrong_type(out),
        }
    } else if is("INCR") || is("DECR") || is("INCRBY") || is("DECRBY") {
        let by = match (argc, is("INCR") || is("DECR")) {
            (2, true) => 1,
            (3, false) => match parse_i64(arg(2)) {
                Some(n) => n,
                None => return not_integer(out),
            },
            _ => return arity(out, name),
        };
        let by = if is("DECR") || is("DECRBY") {
            match by.checked_neg() {
                Some(n) => n,
                None => return not_integer(out),
            }
        } else {
            by
        };
        incr(store, arg(1), by, out);
    } else if is("DEL") || is("EXISTS") {
        if argc < 2 {
            return arity(out, name);
        }
        let del = is("DEL");
        let mut n = 0;
        for r in &args[1..] {
            let key = &buf[r.clone()];
            let mut shard = store.shard(key);
            let hit = if del {
                shard.remove(key).is_some()
            } else {
                shard.contains_key(key)
            };
            n += i64::from(hit);
        }
        integer(out, n);
    } else if is("LPUSH") || is("RPUSH") {
        if argc < 3 {
            return arity(out, name);
        }
        let front = is("LPUSH");
        let mut shard = store.shard(arg(1));
        let value = shard
            .entry(arg(1).into())
            .or_insert_with(|| Value::List(VecDeque::new()));
        let Value::List(list) = value else {
            return wrong_type(out);
        };
        for r in &args[2..] {
            let item = buf[r.clone()].to_vec();
            if front {
                list.push_front(item);
            } else {
                list.push_back(item);
            }
        }
        integer(out, list.len() as i64);
    } else if is("LPOP") || is("RPOP") {
        if argc != 2 {
            return arity(out, name);
        }
        let front = is("LPOP");
        let mut shard = store.shard(arg(1));
        let Entry::Occupied(mut e) = shard.entry(arg(1).into()) else {
            return out.extend_from_slice(b"$-1\r\n");
        };
        let Value::List(list) = e.get_mut() else {
            return wrong_type(out);
        };
        let item = if front {
            list.pop_front()
        } else {
            list.pop_back()
        };
        match item {
            Some(item) => bulk(out, &item),
            None => out.extend_from_slice(b"$-1\r\n"),
        }
        if list.is_empty() {
            e.remove();
        }
    } else if is("LLEN") {
        if argc != 2 {
            return arity(out, name);
        }
        match store.shard(arg(1)).get(arg(1)) {
            None => integer(out, 0),
            Some(Value::List(l)) => integer(out, l.len() as i64),
            Some(Value::Str(_)) => wrong_type(out),
        }
    } else if is("LRANGE") {
        if argc != 4 {
            return arity(out, name);
        }
        let (Some(start), Some(stop)) = (parse_i64(arg(2)), parse_i64(arg(3))) else {
            return not_integer(out);
        };
        match store.shard(arg(1)).get(arg(1)) {
            None => out.extend_from_slice(b"*0\r\n"),
            Some(Value::List(l)) => lrange(out, l, start, stop),
            Some(Value::Str(_)) => wrong_type(out),
        }
    } else if is("DBSIZE") {
        let n: usize = store
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum();
        integer(out, n as i64);
    } else if is("FLUSHALL") || is("FLUSHDB") {
        for s in &store.shards {
            s.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        out.extend_from_slice(b"+OK\r\n");
    } else if is("CONFIG") || is("COMMAND") {
        // What redis-benchmark asks at start (`CONFIG GET save`): no
        // settings here.
        out.extend_from_slice(b"*0\r\n");
    } else {
        out.extend_from_slice(b"-ERR unknown command '");
        out.extend(name.iter().filter(|b| b.is_ascii_graphic()));
        out.extend_from_slice(b"'\r\n");
    }
}

fn set(store: &Store, key: &[u8], value: &[u8]) {
    let mut shard = store.shard(key);
    // An existing string is overwritten in place: no allocation.
    if let Some(Value::Str(v)) = shard.get_mut(key) {
        v.clear();
        v.extend_from_slice(value);
        return;
    }
    shard.insert(key.into(), Value::Str(value.to_vec()));
}

fn incr(store: &Store, key: &[u8], by: i64, out: &mut Vec<u8>) {
    let mut shard = store.shard(key);
    let v = match shard.get_mut(key) {
        Some(Value::Str(v)) => v,
        Some(Value::List(_)) => return wrong_type(out),
        None => shard
            .entry(key.into())
            .or_insert_with(|| Value::Str(b"0".to_vec()))
            .as_str_mut(),
    };
    let Some(n) = parse_i64(v).and_then(|n| n.checked_add(by)) else {
        return not_integer(out);
    };
    v.clear();
    let _ = write!(v, "{n}");
    integer(out, n);
}

impl Value {
    fn as_str_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Value::Str(v) => v,
            Value::List(_) => unreachable!("just inserted as a string"),
        }
    }
}

fn lrange(out: &mut Vec<u8>, list: &VecDeque<Vec<u8>>, start: i64, stop: i64) {
    let len = list.len() as i64;
    let norm = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, stop) = (norm(start), norm(stop).min(len - 1));
    if start > stop {
        return out.extend_from_slice(b"*0\r\n");
    }
    let _ = write!(out, "*{}\r\n", stop - start + 1);
    for item in list.range(start as usize..=stop as usize) {
        bulk(out, item);
    }
}

fn bulk(out: &mut Vec<u8>, v: &[u8]) {
    let _ = write!(out, "${}\r\n", v.len());
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

fn integer(out: &mut Vec<u8>, n: i64) {
    let _ = write!(out, ":{n}\r\n");
}

fn arity(out: &mut Vec<u8>, name: &[u8]) {
    out.extend_from_slice(b"-ERR wrong number of arguments for '");
    out.extend(name.iter().filter(|b| b.is_ascii_graphic()));
    out.extend_from_slice(b"' command\r\n");
}

fn wrong_type(out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
}

fn not_integer(out: &mut Vec<u8>) {
    out.extend_from_slice(b"-ERR value is not an integer or out of range\r\n");
}

/// One connection's buffers, reused for its whole life: what has been read
/// and not yet parsed, the replies to write, and the parser's argument
/// ranges. A steady stream of requests allocates nothing here.
pub(crate) struct Session {
    input: Vec<u8>,
    /// Start of the unparsed bytes in `input`.
    start: usize,
    /// End of the bytes read into `input`.
    end: usize,
    output: Vec<u8>,
    args: Vec<Range<usize>>,
}

impl Session {
    /// A session with empty buffers.
    pub(crate) fn new() -> Session {
        Session {
            input: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            output: Vec::with_capacity(READ_CHUNK),
            args: Vec::with_capacity(8),
        }
    }

    /// Where the next read should put its bytes (at least a quarter of
    /// `READ_CHUNK`).
    pub(crate) fn read_buf(&mut self) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.input.len() - self.end < READ_CHUNK / 4 {
            // Move a partial request to the front; grow only if it nearly
            // fills the buffer by itself.
            self.input.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if self.input.len() - self.end < READ_CHUNK / 4 {
                self.input.resize(self.input.len() * 2, 0);
            }
        }
        &mut self.input[self.end..]
    }

    /// Takes `n` bytes just read into [`read_buf`](Session::read_buf), runs
    /// every complete request among the unparsed bytes, and returns the
    /// replies to write (all of them at once). `Err` on bytes that are not
    /// RESP, after an error reply for the client.
    pub(crate) fn received(&mut self, n: usize, store: &Store) -> Result<&[u8], ()> {
        self.end += n;
        self.output.clear();
        loop {
            let pending = &self.input[self.start..self.end];
            match parse(pending, &mut self.args) {
                Parsed::Request(used) => {
                    execute(store, pending, &self.args, &mut self.output);
                    self.start += used;
                }
                Parsed::Incomplete => return Ok(&self.output),
                Parsed::Invalid(why) => {
                    let _ = write!(self.output, "-ERR Protocol error: {why}\r\n");
                    return Err(());
                }
            }
        }
    }

    /// The replies [`received`](Session::received) made before it failed.
    pub(crate) fn output(&self) -> &[u8] {
        &self.output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of<'a>(buf: &'a [u8], args: &[Range<usize>]) -> Vec<&'a [u8]> {
        args.iter().map(|r| &buf[r.clone()]).collect()
    }

    #[test]
    fn parses_arrays_of_bulk_strings() {
        let mut args = Vec::new();
        let req = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\n*1\r\n";
        let Parsed::Request(n) = parse(req, &mut args) else {
            panic!("not parsed");
        };
        assert_eq!(&req[n..], b"*1\r\n");
        let got: Vec<&[u8]> = args_of(req, &args);
        assert_eq!(got, [&b"SET"[..], b"k", b"va\r\nl"]);
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete() {
        let req = b"*2\r\n$4\r\nECHO\r\n$12\r\nhello, world\r\n";
        let mut args = Vec::new();
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut], &mut args), Parsed::Incomplete, "{cut}");
        }
        assert_eq!(parse(req, &mut args), Parsed::Request(req.len()));
    }

    #[test]
    fn parses_inline_commands() {
        let mut args = Vec::new();
        let req = b"  SET  key   value\r\nPING\n";
        let Parsed::Request(n) = parse(req, &mut args) else {
            panic!("not parsed");
        };
        assert_eq!(args_of(req, &args), [&b"SET"[..], b"key", b"value"]);
        assert_eq!(parse(&req[n..], &mut args), Parsed::Request(5));
        assert_eq!(args_of(&req[n..], &args), [&b"PING"[..]]);
    }

    #[test]
    fn refuses_what_is_not_resp() {
        let mut args = Vec::new();
        for bad in [
            &b"*1\r\n+PING\r\n"[..],
            b"*x\r\n",
            b"*1\r\n$-3\r\n",
            b"*1\r\n$4\r\nPINGxx",
            b"*1\rx",
        ] {
            assert!(
                matches!(parse(bad, &mut args), Parsed::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn numbers_parse_like_redis() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"12a"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
    }

    /// Feeds `input` to a session in pieces of `step` bytes and returns all
    /// the replies.
    fn run(store: &Store, input: &[u8], step: usize) -> Vec<u8> {
        let mut s = Session::new();
        let mut replies = Vec::new();
        for piece in input.chunks(step) {
            s.read_buf()[..piece.len()].copy_from_slice(piece);
            replies.extend_from_slice(s.received(piece.len(), store).expect("valid"));
        }
        replies
    }

    #[test]
    fn commands_reply_as_redis_does_whatever_the_read_sizes() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$2\r\n41\r\n\
            *2\r\n$4\r\nINCR\r\n$1\r\na\r\n\
            *2\r\n$3\r\nGET\r\n$1\r\na\r\n\
            *2\r\n$3\r\nGET\r\n$1\r\nz\r\n\
            *4\r\n$5\r\nLPUSH\r\n$1\r\nl\r\n$1\r\nx\r\n$1\r\ny\r\n\
            *2\r\n$4\r\nLPOP\r\n$1\r\nl\r\n\
            *2\r\n$4\r\nINCR\r\n$1\r\nl\r\n\
            *4\r\n$6\r\nLRANGE\r\n$1\r\nl\r\n$1\r\n0\r\n$2\r\n-1\r\n\
            PING\r\n\
            *1\r\n$4\r\nNOPE\r\n";
        let expected: &[u8] = b"+OK\r\n:42\r\n$2\r\n42\r\n$-1\r\n:2\r\n$1\r\ny\r\n\
            -WRONGTYPE Operation against a key holding the wrong kind of value\r\n\
            *1\r\n$1\r\nx\r\n+PONG\r\n-ERR unknown command 'NOPE'\r\n";
        for step in [1, 2, 3, 7, 64, input.len()] {
            let store = Store::new();
            assert_eq!(
                String::from_utf8_lossy(&run(&store, input, step)),
                String::from_utf8_lossy(expected),
                "read size {step}"
            );
        }
    }

    #[test]
    fn a_request_larger_than_the_buffer_grows_it() {
        let store = Store::new();
        let value = vec![b'v'; 3 * READ_CHUNK];
        let mut input = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).into_bytes();
        input.extend_from_slice(&value);
        input.extend_from_slice(b"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let replies = run(&store, &input, 1000);
        let mut expected = format!("+OK\r\n${}\r\n", value.len()).into_bytes();
        expected.extend_from_slice(&value);
        expected.extend_from_slice(b"\r\n");
        assert!(replies == expected, "{} bytes of replies", replies.len());
    }
}
