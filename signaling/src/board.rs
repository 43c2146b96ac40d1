//! Whiteboard operations as they cross the wire (pen and eraser strokes drawn a segment
//! at a time, shapes, text; not pixels), and the bounds every operation keeps to.
use serde::{Deserialize, Serialize};

/// The board's size in its own units: clients scale it to what they show.
pub const WIDTH: i32 = 1600;
pub const HEIGHT: i32 = 900;
/// Points in one operation (a stroke is sent as several segments as it is drawn).
pub const MAX_SEGMENT_POINTS: usize = 500;
pub const MAX_TEXT_CHARS: usize = 200;
pub const MAX_WIDTH: u32 = 64;
/// Operations and points on one board.
pub const MAX_OPS: usize = 20_000;
pub const MAX_POINTS: usize = 500_000;

const TOOLS: [&str; 6] = ["pen", "eraser", "line", "rect", "ellipse", "text"];

/// One operation on the board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoardOp {
    /// Unique on the board: repeated (a link coming up again) it is taken once.
    pub op_id: u64,
    /// The participant who drew it.
    pub author: String,
    /// The author's stroke it belongs to (undo takes a whole stroke).
    pub stroke_id: u32,
    pub tool: String,
    /// `#rrggbb`.
    pub color: String,
    /// Line width, or the text's size.
    pub width: u32,
    /// x, y, x, y, …: a polyline (pen, eraser), two corners (line, rect, ellipse) or
    /// where the text starts.
    pub points: Vec<i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl BoardOp {
    /// Why this operation cannot go on a board, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !TOOLS.contains(&self.tool.as_str()) {
            return Err(format!("tool: one of {}", TOOLS.join(", ")));
        }
        let c = self.color.as_bytes();
        if c.len() != 7 || c[0] != b'#' || !c[1..].iter().all(u8::is_ascii_hexdigit) {
            return Err("color: #rrggbb".into());
        }
        if !(1..=MAX_WIDTH).contains(&self.width) {
            return Err(format!("width: 1 to {MAX_WIDTH}"));
        }
        let n = self.points.len();
        let points_ok = match self.tool.as_str() {
            "pen" | "eraser" => (2..=2 * MAX_SEGMENT_POINTS).contains(&n) && n.is_multiple_of(2),
            "text" => n == 2,
            _ => n == 4,
        };
        if !points_ok {
            return Err(format!(
                "points: x, y pairs (pen and eraser: 1 to {MAX_SEGMENT_POINTS} per message; \
                 line, rect, ellipse: two corners; text: one point)"
            ));
        }
        let inside = self
            .points
            .chunks(2)
            .all(|p| (0..=WIDTH).contains(&p[0]) && (0..=HEIGHT).contains(&p[1]));
        if !inside {
            return Err(format!("points: within 0..={WIDTH} × 0..={HEIGHT}"));
        }
        match self.tool.as_str() {
            "text" => {
                let chars = self.text.chars().count();
                if chars == 0 || chars > MAX_TEXT_CHARS || self.text.chars().any(char::is_control) {
                    return Err(format!("text: 1 to {MAX_TEXT_CHARS} printable characters"));
                }
            }
            _ if !self.text.is_empty() => return Err("text: only for the text tool".into()),
            _ => {}
        }
        Ok(())
    }
}
