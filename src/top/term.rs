//! The full-screen terminal of `keyviz top` (Unix): the alternate screen, cbreak input
//! (keys arrive one by one, unechoed; Ctrl-C still raises SIGINT), the window size, and a
//! guard that restores the terminal when dropped — on `q`, on a signal, on an error and
//! on a panic (unwinding runs the drop).
//!
//! Built on rustix's safe termios calls (already in the dependency tree) plus a handful
//! of standard escape sequences, instead of a terminal crate: the view needs no more.

use std::io::{self, IsTerminal as _, Read as _, Write as _};

use rustix::termios::{
    LocalModes, OptionalActions, SpecialCodeIndex, Termios, tcgetattr, tcgetwinsize, tcsetattr,
};
use tokio::sync::mpsc;

const ENTER: &str = "\x1b[?1049h\x1b[?25l";
const LEAVE: &str = "\x1b[0m\x1b[?25h\x1b[?1049l";
const HOME_CLEAR: &str = "\x1b[H\x1b[2J";

/// The terminal in full-screen mode; dropping it restores the screen and the input mode.
pub(crate) struct Screen {
    saved: Option<Termios>,
}

impl Screen {
    /// Switches stdout to the alternate screen and, when stdin is a terminal, stdin to
    /// cbreak mode.
    ///
    /// # Errors
    /// Writing to stdout or changing the terminal mode failed.
    pub(crate) fn enter() -> io::Result<Screen> {
        let stdin = io::stdin();
        let saved = if stdin.is_terminal() {
            let saved = tcgetattr(&stdin)?;
            let mut cbreak = saved.clone();
            cbreak.local_modes -= LocalModes::ICANON | LocalModes::ECHO;
            cbreak.special_codes[SpecialCodeIndex::VMIN] = 1;
            cbreak.special_codes[SpecialCodeIndex::VTIME] = 0;
            tcsetattr(&stdin, OptionalActions::Now, &cbreak)?;
            Some(saved)
        } else {
            None
        };
        // Build the guard first so a failing write still restores the input mode.
        let screen = Screen { saved };
        let mut out = io::stdout().lock();
        out.write_all(ENTER.as_bytes())?;
        out.flush()?;
        Ok(screen)
    }

    /// Whether keys can be read (stdin is the terminal).
    pub(crate) fn reads_keys(&self) -> bool {
        self.saved.is_some()
    }

    /// `(columns, lines)` of the terminal; 80×24 when unknown.
    pub(crate) fn size() -> (usize, usize) {
        match tcgetwinsize(io::stdout()) {
            Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (usize::from(w.ws_col), usize::from(w.ws_row)),
            _ => (80, 24),
        }
    }

    /// Clears the screen and draws `frame` from the top-left corner in one write. The
    /// frame's last newline is dropped so a frame as tall as the terminal does not scroll.
    ///
    /// # Errors
    /// Writing to stdout failed.
    pub(crate) fn draw(&mut self, frame: &str) -> io::Result<()> {
        let mut buf = String::with_capacity(frame.len() + 16);
        buf.push_str(HOME_CLEAR);
        buf.push_str(frame.strip_suffix('\n').unwrap_or(frame));
        let mut out = io::stdout().lock();
        out.write_all(buf.as_bytes())?;
        out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(LEAVE.as_bytes());
        let _ = out.flush();
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(io::stdin(), OptionalActions::Now, saved);
        }
    }
}

/// Reads stdin byte by byte on a thread of its own and sends each byte. The thread ends
/// when stdin closes or the receiver is dropped (at the next key); it never holds a lock
/// the rest of the program needs, so the process can exit while it blocks in `read`.
pub(crate) fn spawn_key_reader() -> mpsc::Receiver<u8> {
    let (tx, rx) = mpsc::channel(64);
    let spawned = std::thread::Builder::new()
        .name("keyviz-top-keys".into())
        .spawn(move || {
            let mut stdin = io::stdin();
            let mut byte = [0u8; 1];
            while let Ok(1) = stdin.read(&mut byte) {
                if tx.blocking_send(byte[0]).is_err() {
                    break;
                }
            }
        });
    // Without the thread there are no keys; the channel's sender was moved into the
    // failed closure and dropped, so the receiver reports "closed".
    let _ = spawned;
    rx
}
