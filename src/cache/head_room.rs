//! Stored response heads with room for the fields every hit adds.
//!
//! A hit clones the stored head and then inserts `Age`, `Accept-Ranges`,
//! `Cache-Status`, the request id, `Connection` and whatever the listener
//! and route add. The `http` crate's `HeaderMap` keeps its index table at
//! the size it had when cloned, and a head parsed from an origin's response
//! has a table sized for exactly its own fields: the first inserts on every
//! hit rehashed both of Pingora's maps (values and case-preserved names)
//! into a table twice as large. Grown once when the object is stored, the
//! table is copied at that size on every hit and never rehashed there.
//! (HTTP/1 fast hits copy a head prepared from this one, which also has
//! the fields in place; HTTP/2 and full-path hits copy this one.)
//! Neither map has a way to reserve through Pingora's `ResponseHeader`, so
//! the room is made by inserting placeholder fields and removing them:
//! removal leaves the table at its size.

use pingora::http::ResponseHeader;

/// Fields a hit may add without the maps growing (six always, the rest for
/// HSTS, `Via`, a route's own response fields).
pub(super) const ROOM: usize = 10;

const PLACEHOLDERS: [&str; ROOM] = [
    "x-parapet-room-0",
    "x-parapet-room-1",
    "x-parapet-room-2",
    "x-parapet-room-3",
    "x-parapet-room-4",
    "x-parapet-room-5",
    "x-parapet-room-6",
    "x-parapet-room-7",
    "x-parapet-room-8",
    "x-parapet-room-9",
];

/// A copy of `head` whose header maps can take [`ROOM`] more fields
/// without growing; the same fields, in the same order and case.
pub(super) fn with_room(head: &ResponseHeader) -> ResponseHeader {
    let mut head = head.clone();
    if head.headers.capacity() >= head.headers.len() + ROOM {
        return head;
    }
    for name in PLACEHOLDERS {
        if head.insert_header(name, "").is_err() {
            break;
        }
    }
    for name in PLACEHOLDERS {
        head.remove_header(name);
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin_head() -> ResponseHeader {
        let mut h = ResponseHeader::build(200, Some(4)).unwrap();
        h.append_header("Date", "Sun, 06 Dec 2026 05:00:00 GMT")
            .unwrap();
        h.append_header("Cache-Control", "max-age=60").unwrap();
        h.append_header("X-Origin-Thing", "a").unwrap();
        h.append_header("x-origin-thing", "b").unwrap();
        h.append_header("content-length", "3").unwrap();
        h
    }

    fn wire(h: &ResponseHeader) -> Vec<u8> {
        let mut buf = Vec::new();
        h.header_to_h1_wire(&mut buf);
        buf
    }

    #[test]
    fn the_copy_has_the_same_fields_in_order_and_case_and_room_for_more() {
        let head = origin_head();
        assert!(head.headers.capacity() < head.headers.len() + ROOM);
        let roomy = with_room(&head);
        assert_eq!(wire(&roomy), wire(&head));
        assert_eq!(roomy.status, head.status);
        assert!(roomy.headers.capacity() >= roomy.headers.len() + ROOM);
        // A clone keeps the room: what a hit starts from.
        let hit = roomy.clone();
        assert!(hit.headers.capacity() >= hit.headers.len() + ROOM);
        let mut hit = hit;
        hit.insert_header("Age", "1").unwrap();
        assert!(wire(&hit).ends_with(b"Age: 1\r\n"));
    }

    #[test]
    fn a_head_with_room_already_is_copied_as_it_is() {
        let head = with_room(&origin_head());
        let again = with_room(&head);
        assert_eq!(wire(&again), wire(&head));
        assert_eq!(again.headers.capacity(), head.headers.capacity());
    }
}
