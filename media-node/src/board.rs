//! The meeting's whiteboard: operations (pen and eraser strokes drawn a segment at a
//! time, shapes, text), not pixels. Each media node keeps the board of its meetings
//! with the room (`room.rs`), broadcasts every operation to its sessions as it comes,
//! and relays those of its own participants to the meeting's other nodes, which keep
//! them too; a link that comes up sends the far node what ours drew. A late joiner gets
//! the whole board in one `board` message.
//!
//! Everything is bounded: a segment's points, a text's length, the board's operations
//! and points (a full board refuses more until a host clears it), and how fast a
//! session may send (`meeting/allowance.rs`).
use std::collections::HashSet;

pub use signaling::board::{BoardOp, MAX_OPS, MAX_POINTS};

/// One meeting's board on this node.
#[derive(Default)]
pub struct Board {
    /// In the order they came, each with whether its author is (was) connected here.
    ops: Vec<(BoardOp, bool)>,
    ids: HashSet<u64>,
    points: usize,
}

impl Board {
    /// Puts `op` (checked already) on the board; `Ok(false)` when it was there already.
    pub fn draw(&mut self, op: BoardOp, local: bool) -> Result<bool, &'static str> {
        if self.ids.contains(&op.op_id) {
            return Ok(false);
        }
        if self.ops.len() >= MAX_OPS || self.points + op.points.len() / 2 > MAX_POINTS {
            return Err("the whiteboard is full: a host can clear it");
        }
        self.points += op.points.len() / 2;
        self.ids.insert(op.op_id);
        self.ops.push((op, local));
        Ok(true)
    }

    /// Takes `author`'s stroke off the board; whether there was one.
    pub fn undo(&mut self, author: &str, stroke_id: u32) -> bool {
        let before = self.ops.len();
        self.ops
            .retain(|(o, _)| !(o.author == author && o.stroke_id == stroke_id));
        self.points = self.ops.iter().map(|(o, _)| o.points.len() / 2).sum();
        self.ids = self.ops.iter().map(|(o, _)| o.op_id).collect();
        self.ops.len() != before
    }

    pub fn clear(&mut self) {
        self.ops.clear();
        self.ids.clear();
        self.points = 0;
    }

    /// Everything on the board, in order.
    pub fn ops(&self) -> Vec<BoardOp> {
        self.ops.iter().map(|(o, _)| o.clone()).collect()
    }

    /// What this node's participants drew (for a relay link coming up).
    pub fn local_ops(&self) -> Vec<BoardOp> {
        self.ops
            .iter()
            .filter(|(_, local)| *local)
            .map(|(o, _)| o.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::board::{MAX_SEGMENT_POINTS, MAX_TEXT_CHARS};

    fn pen(op_id: u64, author: &str, stroke_id: u32, points: Vec<i32>) -> BoardOp {
        BoardOp {
            op_id,
            author: author.into(),
            stroke_id,
            tool: "pen".into(),
            color: "#ff0000".into(),
            width: 4,
            points,
            text: String::new(),
        }
    }

    #[test]
    fn operations_are_checked_against_the_bounds() {
        assert!(pen(1, "a", 1, vec![0, 0, 1600, 900]).check().is_ok());
        for bad in [
            pen(1, "a", 1, vec![]),
            pen(1, "a", 1, vec![1, 2, 3]),
            pen(1, "a", 1, vec![-1, 0]),
            pen(1, "a", 1, vec![0, 901]),
            pen(1, "a", 1, vec![5; 2 * MAX_SEGMENT_POINTS + 2]),
            BoardOp {
                color: "red".into(),
                ..pen(1, "a", 1, vec![0, 0])
            },
            BoardOp {
                width: 0,
                ..pen(1, "a", 1, vec![0, 0])
            },
            BoardOp {
                tool: "spray".into(),
                ..pen(1, "a", 1, vec![0, 0])
            },
            BoardOp {
                tool: "rect".into(),
                ..pen(1, "a", 1, vec![0, 0])
            },
            BoardOp {
                tool: "text".into(),
                ..pen(1, "a", 1, vec![0, 0])
            },
            BoardOp {
                text: "x".into(),
                ..pen(1, "a", 1, vec![0, 0])
            },
            BoardOp {
                tool: "text".into(),
                text: "y".repeat(MAX_TEXT_CHARS + 1),
                ..pen(1, "a", 1, vec![0, 0])
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        let text = BoardOp {
            tool: "text".into(),
            text: "Hello".into(),
            ..pen(1, "a", 1, vec![10, 10])
        };
        assert!(text.check().is_ok());
    }

    #[test]
    fn strokes_are_undone_whole_repeats_are_taken_once_and_a_full_board_refuses() {
        let mut b = Board::default();
        assert_eq!(b.draw(pen(1, "a", 7, vec![0, 0, 1, 1]), true), Ok(true));
        assert_eq!(b.draw(pen(2, "a", 7, vec![1, 1, 2, 2]), true), Ok(true));
        assert_eq!(b.draw(pen(3, "b", 7, vec![5, 5]), false), Ok(true));
        assert_eq!(
            b.draw(pen(3, "b", 7, vec![5, 5]), false),
            Ok(false),
            "a repeat"
        );
        assert_eq!(b.local_ops().len(), 2);
        assert!(b.undo("a", 7));
        assert!(!b.undo("a", 7), "nothing left to undo");
        assert_eq!(b.ops(), [pen(3, "b", 7, vec![5, 5])], "b's stroke 7 stays");
        b.clear();
        assert!(b.ops().is_empty());
        let big = vec![3; 2 * MAX_SEGMENT_POINTS];
        let full = (MAX_POINTS / MAX_SEGMENT_POINTS) as u64;
        for i in 0..full {
            b.draw(pen(100 + i, "a", 1, big.clone()), true).unwrap();
        }
        assert!(b.draw(pen(1, "a", 2, vec![0, 0]), true).is_err(), "full");
        assert!(b.undo("a", 1));
        assert!(
            b.draw(pen(1, "a", 2, vec![0, 0]), true).is_ok(),
            "room again"
        );
    }
}
