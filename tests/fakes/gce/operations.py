"""Global operations of the fake: each call that changes something returns one, RUNNING until polled
(`polls_per_operation` waits), then DONE, with `error` and `httpErrorStatusCode` when it failed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fakes.gce.contract import ApiError
from fakes.gce.state import State

HTTP_REASONS = {
    400: "BAD REQUEST",
    403: "FORBIDDEN",
    404: "NOT FOUND",
    409: "CONFLICT",
    412: "PRECONDITION FAILED",
}
Finish = Callable[[str, str, "dict[str, Any] | None"], None]


def op_error(code: str, message: str, status: int = 400) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}], "status": status}


class Operations:
    state: State
    polls_per_operation: int

    def _link(self, project: str, kind: str, name: str) -> str:
        raise NotImplementedError

    def _now(self) -> str:
        raise NotImplementedError

    def _new_id(self) -> int:
        raise NotImplementedError

    def _injected_error(self, kind: str) -> dict[str, Any] | None:
        """The error a test queued for the next operation of this type, once."""
        for i, (queued, error) in enumerate(self.state.operation_errors):
            if queued == kind:
                del self.state.operation_errors[i]
                return error
        return None

    def _operation(
        self,
        project: str,
        kind: str,
        collection: str,
        name: str,
        error: dict[str, Any] | None,
        finish: Finish | None = None,
    ) -> dict[str, Any]:
        op_name = f"operation-{self._new_id()}-{kind.lower()}"
        op = {
            "kind": "compute#operation",
            "id": str(self._new_id()),
            "name": op_name,
            "operationType": kind,
            "targetLink": self._link(project, collection, name),
            "status": "RUNNING",
            "progress": 0,
            "insertTime": self._now(),
            "user": "imgpub-test@example.com",
            "selfLink": self._link(project, "operations", op_name),
        }
        self.state.operations[(project, op_name)] = op
        self.state.pending[(project, op_name)] = [self.polls_per_operation, error, finish, name]
        return op

    def _advance(self, project: str, name: str) -> dict[str, Any]:
        key = (project, name)
        op = self.state.operations.get(key)
        if op is None:
            raise ApiError(404, f"The resource 'projects/{project}/global/operations/{name}' was not found")
        pending = self.state.pending.get(key)
        if pending is not None:
            pending[0] -= 1
            op["progress"] = 50
            if pending[0] <= 0:
                del self.state.pending[key]
                _, error, finish, resource = pending
                op.update(status="DONE", progress=100, endTime=self._now())
                if error is not None:
                    op["error"] = {"errors": error["errors"]}
                    op["httpErrorStatusCode"] = error["status"]
                    op["httpErrorMessage"] = HTTP_REASONS.get(error["status"], "ERROR")
                if finish is not None:
                    finish(project, resource, error)
        return op

    def _global_operations_get(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        return self._advance(args["project"], args["operation"])

    def _global_operations_wait(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        return self._advance(args["project"], args["operation"])
