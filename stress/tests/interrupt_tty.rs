//! Ctrl-C on a terminal: the progress line is erased, the report marked interrupted starts on
//! a fresh line, and the terminal is left as it was found.
//!
//! The other interrupt tests pipe stderr, so no progress line is drawn in them; this one runs
//! `costress` on a pseudo-terminal and replays what it wrote on a small model of a screen.

mod common;

use std::fs::File;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use common::{costress, scratch};

/// What the progress line shows once it has a rate ("N ops, R ops/s"): the report also
/// says "ops/s", but only after the interrupt.
const PROGRESS_RATE: &str = "ops/s";

/// The start of the progress line's bar, after the workload's name; nowhere in the report.
const PROGRESS_BAR: &str = "mixed [";

/// Everything the terminal received, as a reader thread collects it.
type Received = Arc<Mutex<Vec<u8>>>;

/// Reads the pty's master side into `received` until every slave descriptor is closed.
fn collect(master: File, received: Received) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut master = master;
        let mut buffer = [0u8; 4096];
        // Linux answers EIO once the last slave descriptor closes: that is the end.
        while let Ok(n @ 1..) = master.read(&mut buffer) {
            received.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    })
}

/// Waits, polling, until `done` holds, failing with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// What a terminal shows after the bytes it received: the rows of text, and whether the
/// cursor is visible. Enough of ECMA-48 for what indicatif and the report write: CR, LF,
/// backspace, erase in line and display, cursor movement, cursor visibility; colours and
/// any other control sequence leave the text alone.
#[derive(Debug)]
struct Screen {
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
    cursor_visible: bool,
}

impl Screen {
    fn replay(bytes: &[u8]) -> Screen {
        let mut screen = Screen {
            rows: vec![Vec::new()],
            row: 0,
            col: 0,
            cursor_visible: true,
        };
        let text = String::from_utf8_lossy(bytes);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => screen.col = 0,
                '\n' => screen.move_to_row(screen.row + 1),
                '\u{8}' => screen.col = screen.col.saturating_sub(1),
                '\u{1b}' if chars.peek() == Some(&'[') => {
                    chars.next();
                    let mut params = String::new();
                    let mut command = None;
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            command = Some(c);
                            break;
                        }
                        params.push(c);
                    }
                    screen.control(&params, command);
                }
                c if c.is_control() => {}
                c => screen.put(c),
            }
        }
        screen
    }

    fn move_to_row(&mut self, row: usize) {
        self.row = row;
        while self.rows.len() <= row {
            self.rows.push(Vec::new());
        }
    }

    fn put(&mut self, c: char) {
        let line = &mut self.rows[self.row];
        if line.len() <= self.col {
            line.resize(self.col + 1, ' ');
        }
        line[self.col] = c;
        self.col += 1;
    }

    fn control(&mut self, params: &str, command: Option<char>) {
        let n = || params.parse::<usize>().unwrap_or(1).max(1);
        let line = &mut self.rows[self.row];
        match (params, command) {
            ("?25", Some('l')) => self.cursor_visible = false,
            ("?25", Some('h')) => self.cursor_visible = true,
            ("" | "0", Some('K')) => line.truncate(self.col),
            ("1", Some('K')) => line.iter_mut().take(self.col + 1).for_each(|c| *c = ' '),
            ("2", Some('K')) => line.clear(),
            ("" | "0", Some('J')) => {
                line.truncate(self.col);
                self.rows.truncate(self.row + 1);
            }
            (_, Some('A')) => self.row = self.row.saturating_sub(n()),
            (_, Some('B')) => self.move_to_row(self.row + n()),
            (_, Some('C')) => self.col += n(),
            (_, Some('D')) => self.col = self.col.saturating_sub(n()),
            (_, Some('G')) => self.col = n() - 1,
            _ => {}
        }
    }

    /// The rows as text, trailing blanks removed.
    fn lines(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(|row| row.iter().collect::<String>().trim_end().to_owned())
            .collect()
    }
}

#[test]
fn ctrl_c_on_a_terminal_erases_the_progress_line() {
    let dir = scratch("interrupt-tty");
    let size = Winsize {
        ws_row: 24,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).expect("open a pseudo-terminal");
    let mut command = costress(&dir);
    command
        .args(["mixed", "--duration", "60s", "--threads", "2"])
        .args(["--pin-threads", "false", "--coroutines", "4"])
        .env("TERM", "xterm-256color")
        .stdin(std::process::Stdio::null())
        .stdout(pty.slave.try_clone().expect("dup the slave side"))
        .stderr(pty.slave);
    let mut child = command.spawn().expect("start costress");
    // The command holds the slave side; only the child may, or the reader never ends.
    drop(command);
    let received = Received::default();
    let reader = collect(File::from(pty.master), Arc::clone(&received));

    let shown = || String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
    wait_for(Duration::from_secs(30), "a progress line", || {
        shown().contains(PROGRESS_RATE)
    });
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGINT).expect("send SIGINT");
    let mut status = None;
    wait_for(Duration::from_secs(30), "costress to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    reader.join().unwrap();

    let bytes = received.lock().unwrap().clone();
    let screen = Screen::replay(&bytes);
    let lines = screen.lines();
    let seen = format!(
        "{lines:#?}\nreceived: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(status.unwrap().code(), Some(130), "{seen}");
    assert!(
        lines.iter().all(|line| !line.contains(PROGRESS_BAR)),
        "the progress line is left on the screen: {seen}"
    );
    let notice = lines
        .iter()
        .position(|line| line.starts_with("costress: interrupted; reporting what ran"))
        .unwrap_or_else(|| panic!("the notice starts a line of its own: {seen}"));
    assert!(
        lines[notice..]
            .iter()
            .any(|line| line.starts_with("INTERRUPTED: stopped by a signal")),
        "the report marked interrupted follows, on a line of its own: {seen}"
    );
    assert!(
        lines[notice..]
            .iter()
            .any(|line| line.starts_with("== mixed: ok, interrupted after")),
        "{seen}"
    );
    assert!(screen.cursor_visible, "the cursor is left hidden: {seen}");
    assert_eq!(screen.col, 0, "the prompt lands on a fresh line: {seen}");
}
