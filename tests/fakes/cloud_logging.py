"""A fake Cloud Logging API v2 (`google.logging.v2.LoggingServiceV2`) over gRPC: `ListLogEntries`.

It holds entries (written by tests with `write`, as Cloud Run's agent would from a revision's
output) and answers `entries.list` as Google documents it: `resource_names` of `projects/<id>`,
`order_by` "timestamp asc" (the default) or "timestamp desc", entries of one timestamp ordered by
`insertId`, `page_size` at most 1000 with a `next_page_token`, and a filter in the Logging query
language. The filter subset it reads is the one the runtime sends:

    expression  = disjunction { "AND" disjunction }        (Google's precedence: NOT, OR, then AND)
    disjunction = term { "OR" term }
    term        = ["NOT"] ( "(" expression ")" | comparison )
    comparison  = field operator value                     operators = != > < >= <= :
    field       = resource.type | resource.labels.service_name | resource.labels.revision_name
                  | severity | timestamp | insertId | logName | textPayload | jsonPayload.message
    value       = "quoted string" | bare word (a severity: WARNING)

String comparisons ignore case, `:` matches a part of the value; severities compare by rank,
timestamps as instants. Anything else is refused as Google refuses a filter it cannot parse:
INVALID_ARGUMENT, with where and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse, LogEntry
from proto.datetime_helpers import DatetimeWithNanoseconds

from tests.fakes.grpc_server import FakeError, GrpcFake, invalid, rpc

SERVICE = "google.logging.v2.LoggingServiceV2"
SEVERITY = {"DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400, "ERROR": 500}
SEVERITY.update({"CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800})
FIELDS = {
    "resource.type",
    "resource.labels.service_name",
    "resource.labels.revision_name",
    "severity",
    "timestamp",
    "insertId",
    "logName",
    "textPayload",
    "jsonPayload.message",
}
OPERATORS = ("!=", ">=", "<=", "=", ">", "<", ":")
MAX_PAGE = 1000
MAX_FILTER = 20_000
TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>!=|>=|<=|=|>|<|:)|(?P<paren>[()])|(?P<word>[\w.\-]+))'
)


def unparseable(position: int, token: str) -> FakeError:
    return invalid(f"Unparseable filter: syntax error at line 1, column {position + 1}, token '{token}'")


@dataclass
class _Token:
    kind: str
    text: str
    position: int


def tokens(text: str) -> list[_Token]:
    found, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = TOKEN.match(text, position)
        if not match:
            raise unparseable(position, text[position])
        kind = match.lastgroup or ""
        value = match.group(kind)
        found.append(_Token(kind, value, match.start(kind)))
        position = match.end()
    return found


def timestamp_of(text: str) -> DatetimeWithNanoseconds:
    """An RFC 3339 instant, to the nanosecond."""
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", text):
        raise invalid(f"Invalid timestamp value: {text!r}")
    return DatetimeWithNanoseconds.from_rfc3339(text)


def instant(moment: DatetimeWithNanoseconds) -> tuple[int, int]:
    """(seconds, nanoseconds) since the epoch: what timestamps compare by."""
    return int(moment.replace(microsecond=0).timestamp()), moment.nanosecond


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokens(text)
        self.index = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise invalid("Unparseable filter: unexpected end of filter")
        self.index += 1
        return token

    def parse(self):
        expression = self.expression()
        extra = self.peek()
        if extra is not None:
            raise unparseable(extra.position, extra.text)
        return expression

    def expression(self):
        # Google's precedence: NOT, then OR, then AND ("a AND b OR c" is "a AND (b OR c)").
        terms = [self.disjunction()]
        while (token := self.peek()) is not None and token.text == "AND":
            self.take()
            terms.append(self.disjunction())
        return ("and", terms) if len(terms) > 1 else terms[0]

    def disjunction(self):
        alternatives = [self.term()]
        while (token := self.peek()) is not None and token.text == "OR":
            self.take()
            alternatives.append(self.term())
        return ("or", alternatives) if len(alternatives) > 1 else alternatives[0]

    def term(self):
        token = self.take()
        if token.text == "NOT":
            return ("not", self.term())
        if token.text == "(":
            inner = self.expression()
            closing = self.take()
            if closing.text != ")":
                raise unparseable(closing.position, closing.text)
            return inner
        if token.kind != "word":
            raise unparseable(token.position, token.text)
        if token.text not in FIELDS:
            raise invalid(
                f"Unsupported field in filter: {token.text} (this fake reads {', '.join(sorted(FIELDS))})"
            )
        operator = self.take()
        if operator.kind != "op":
            raise unparseable(operator.position, operator.text)
        value = self.take()
        if value.kind == "string":
            text = re.sub(r"\\(.)", r"\1", value.text[1:-1])
        elif value.kind == "word":
            text = value.text
        else:
            raise unparseable(value.position, value.text)
        if token.text == "severity" and text.upper() not in SEVERITY:
            raise invalid(f"Invalid severity value: {text!r}")
        if token.text == "timestamp":
            timestamp_of(text)
        return ("compare", token.text, operator.text, text)


def _value(entry: LogEntry, field: str):
    if field == "resource.type":
        return entry.resource.type
    if field.startswith("resource.labels."):
        return entry.resource.labels.get(field.removeprefix("resource.labels."), None)
    if field == "severity":
        return int(entry.severity)
    if field == "timestamp":
        return instant(entry.timestamp)
    if field == "insertId":
        return entry.insert_id
    if field == "logName":
        return entry.log_name
    if field == "textPayload":
        return entry.text_payload if "text_payload" in entry else None
    if field == "jsonPayload.message":
        return dict(entry.json_payload).get("message") if "json_payload" in entry else None
    raise AssertionError(field)


def _compare(left, operator: str, right) -> bool:
    if operator == "=":
        return left == right
    if operator == "!=":
        return left != right
    if operator == ">":
        return left > right
    if operator == "<":
        return left < right
    if operator == ">=":
        return left >= right
    return left <= right


def matches(node, entry: LogEntry) -> bool:
    kind = node[0]
    if kind == "and":
        return all(matches(part, entry) for part in node[1])
    if kind == "or":
        return any(matches(part, entry) for part in node[1])
    if kind == "not":
        return not matches(node[1], entry)
    _, field, operator, text = node
    value = _value(entry, field)
    if value is None:
        return operator == "!="  # a missing field equals nothing
    if field == "severity":
        return _compare(value, "=" if operator == ":" else operator, SEVERITY[text.upper()])
    if field == "timestamp":
        return _compare(value, "=" if operator == ":" else operator, instant(timestamp_of(text)))
    if not isinstance(value, str):
        value = str(value)
    if operator == ":":
        return text.casefold() in value.casefold()
    return _compare(value.casefold(), operator, text.casefold())


class CloudLoggingFake(GrpcFake):
    api = "logging.googleapis.com"

    def __init__(self, project_id: str = "portal-test"):
        super().__init__()
        self.project_id = project_id
        self.reset_state()

    def reset_state(self) -> None:
        self.entries: list[LogEntry] = []

    def write(
        self,
        *,
        service: str,
        revision: str,
        timestamp: str,
        insert_id: str,
        severity: str = "DEFAULT",
        text: str | None = None,
        json: dict | None = None,
        http_request: dict | None = None,
        region: str = "us-central1",
    ) -> LogEntry:
        """Hold one entry as Cloud Run's agent writes a line of a revision's output."""
        log = "requests" if http_request else "stderr"
        entry = LogEntry(
            log_name=f"projects/{self.project_id}/logs/run.googleapis.com%2F{log}",
            resource={
                "type": "cloud_run_revision",
                "labels": {
                    "project_id": self.project_id,
                    "service_name": service,
                    "revision_name": revision,
                    "location": region,
                    "configuration_name": service,
                },
            },
            timestamp=timestamp_of(timestamp),
            severity=SEVERITY[severity],
            insert_id=insert_id,
        )
        if text is not None:
            entry.text_payload = text
        elif json is not None:
            entry.json_payload = json
        if http_request is not None:
            entry.http_request = http_request
        with self.lock:
            self.entries.append(entry)
        return entry

    @rpc(SERVICE, "ListLogEntries", ListLogEntriesRequest, ListLogEntriesResponse)
    def list_log_entries(self, request, context):
        if not request.resource_names:
            raise invalid("resource_names must name at least one project, folder or organization.")
        for name in request.resource_names:
            if name != f"projects/{self.project_id}":
                raise FakeError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"The caller does not have permission to read the logs of {name}.",
                )
        order = request.order_by or "timestamp asc"
        if order not in ("timestamp asc", "timestamp desc"):
            raise invalid(f'Invalid order_by: {order!r}; use "timestamp asc" or "timestamp desc".')
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            raise invalid(f"page_size must be between 0 and {MAX_PAGE}.")
        if len(request.filter) > MAX_FILTER:
            raise invalid(f"The filter is longer than {MAX_FILTER} characters.")
        condition = _Parser(request.filter).parse() if request.filter.strip() else None
        found = [entry for entry in self.entries if condition is None or matches(condition, entry)]
        found.sort(
            key=lambda entry: (instant(entry.timestamp), entry.insert_id), reverse=order.endswith("desc")
        )
        start = int(request.page_token) if request.page_token else 0
        size = request.page_size or 50
        page = found[start : start + size]
        token = str(start + size) if start + size < len(found) else ""
        return ListLogEntriesResponse(entries=page, next_page_token=token)
