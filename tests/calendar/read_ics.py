"""Reads an iCalendar file (RFC 5545) with the `icalendar` package, an implementation
independent of Fjord's, and prints what its first event says as JSON: start (with its
UTC offset and time zone), duration, recurrence rule, the first occurrences as the rule
expands them (in UTC), summary, description and URL. A file it cannot parse fails."""
import json
import sys
from datetime import timezone

import icalendar
from dateutil.rrule import rrulestr

with open(sys.argv[1], "rb") as f:
    cal = icalendar.Calendar.from_ical(f.read())
events = list(cal.walk("VEVENT"))
if len(events) != 1:
    sys.exit(f"expected one event, found {len(events)}")
ev = events[0]
start = ev.decoded("DTSTART")
rule = ev.get("RRULE")
occurrences = []
if rule is not None:
    text = rule.to_ical().decode()
    occurrences = [
        t.astimezone(timezone.utc).isoformat()
        for t in list(rrulestr(text, dtstart=start))[:10]
    ]
print(
    json.dumps(
        {
            "start": start.isoformat(),
            "start_utc": start.astimezone(timezone.utc).isoformat(),
            "tzid": ev["DTSTART"].params.get("TZID"),
            "duration_seconds": ev.decoded("DURATION").total_seconds(),
            "rrule": {k: [str(x) for x in v] for k, v in (rule or {}).items()},
            "occurrences_utc": occurrences,
            "summary": str(ev.get("SUMMARY")),
            "description": str(ev.get("DESCRIPTION")),
            "url": str(ev.get("URL")),
            "timezones": [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")],
        }
    )
)
