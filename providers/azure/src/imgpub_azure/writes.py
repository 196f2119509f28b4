"""PUTs, PATCHes and DELETEs to Resource Manager that stay right when a reply is lost or when another run
(another CI job publishing the same manifest) writes the same resource.

A PUT is idempotent in ARM, but sending it again is not always harmless: a PUT while the first
one's operation still runs is refused (409 AnotherOperationInProgress), and a PUT over what another
run just made would redo its work. So every attempt looks first:

* the resource is read; while an operation runs on it (Creating, Updating, Deleting) it is waited for;
* one that already is what this run wants is adopted, unsent (a lost reply's own PUT made it, or
  another run did: `Caller.adopted` records it);
* one that belongs to another image is a conflict, never overwritten;
* otherwise the PUT is sent and followed to its end. A transient failure (a reset, a 5xx, a lost
  reply, 409 AnotherOperationInProgress) starts the attempt again, from the look; so does any other
  refusal when the resource turns out to be under someone's operation, or made as wanted, meanwhile.

A PATCH (`update`: deprecating a version, new regions, tags) looks first in the same way: it is sent
only while the resource is not yet as wanted, so a PATCH whose reply was lost is not sent twice.

A DELETE is sent again after a transient failure; a 404 means it is gone, which is what was wanted.
With `doomed`, the resource is read first and left alone when it is no longer what the caller
meant to delete (another run replaced it by what this run wants).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from imgpub.errors import CloudError, ImageConflictError, ImgpubError
from imgpub_azure.errors import Caller, azure_errors, retry_after
from imgpub_azure.states import failed_state, state_of

__all__ = ["IN_PROGRESS", "Writes"]

T = TypeVar("T")

IN_PROGRESS = ("creating", "updating", "deleting", "accepted", "provisioning", "migrating")
"""provisioningStates of a resource whose operation has not finished (ARM's non-terminal states)."""
WAIT_POLL_SECONDS = 15.0
"""How often a resource under someone's running operation is read again."""
WAIT_LIMIT_SECONDS = 6 * 3600.0
"""Longest wait for another operation to finish (a gallery version may replicate for hours)."""
GONE = ("ResourceNotFound", "NotFound", "404")

Judge = Callable[[T], "bool | str"]
"""What a found resource is to this PUT: True (as wanted: adopt it), False (send the PUT), or the
text of a conflict (it belongs to another image)."""


class _Transient(Exception):
    """A transient failure of the write itself: look again, then go on."""

    def __init__(self, error: CloudError) -> None:
        super().__init__(str(error))
        self.error = error


class Writes:
    def __init__(self, caller: Caller, poll_seconds: float = WAIT_POLL_SECONDS) -> None:
        self.call = caller
        self.poll_seconds = poll_seconds

    def settled(self, what: str, read: Callable[[], T], region: str | None = None) -> T | None:
        """`what` once no operation runs on it; None when it does not exist."""
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        told = False
        while True:
            found = self.call.find(f"get {what}", read, region)
            state = state_of(found) if found is not None else ""
            if state.lower() not in IN_PROGRESS:
                return found
            if time.monotonic() > deadline:
                raise CloudError(
                    self.call.target, f"wait for {what}", f"still {state} after {WAIT_LIMIT_SECONDS:.0f} s"
                )
            if not told:
                self.call.progress.note(f"{what} is {state}: waiting for that operation to finish")
                told = True
            self.call.retry.sleep(self.poll_seconds)

    def put(
        self,
        what: str,
        read: Callable[[], T],
        start: Callable[[], object],
        judge: Judge[T],
        region: str | None = None,
    ) -> T:
        """Make `what` exist as `judge` wants it; returns it as Resource Manager shows it afterwards.
        `start` sends the PUT and follows its operation to the end."""
        sent = False

        def attempt() -> T:
            nonlocal sent
            found = self.settled(what, read, region)
            if found is not None:
                verdict = judge(found)
                if isinstance(verdict, str):
                    raise ImageConflictError(self.call.target, verdict)
                failed = failed_state(found)
                if failed and sent:
                    raise CloudError(
                        self.call.target,
                        f"create {what}",
                        f"its operation ended in provisioningState {failed}",
                        region=region,
                    )
                if verdict and not failed:
                    if not sent:
                        self.call.adopted.append(what)
                        self.call.progress.note(f"{what} exists as wanted (made by another run): adopted")
                    return found
            sent = True
            try:
                self._send(f"create {what}", start, region)
            except CloudError as exc:
                if not self._made_meanwhile(what, read, judge, region):
                    raise
                raise _Transient(exc) from exc  # another run's operation: look again, wait, adopt
            return self.call.visible(f"create {what}: read the result", read, region)

        return self._retrying(attempt)

    def update(
        self,
        what: str,
        read: Callable[[], T],
        start: Callable[[T], object],
        done: Callable[[T], bool],
        region: str | None = None,
    ) -> T | None:
        """Bring an existing resource to what `done` wants with a PATCH (`start(found)` sends it, made
        from the resource as just read, and follows its operation); returns it as Resource Manager
        shows it afterwards, or None when it does not exist. Every attempt looks first, as `put`
        does: one being written is waited for, one already as wanted (a lost reply's PATCH did it)
        is left as it is."""

        def attempt() -> T | None:
            found = self.settled(what, read, region)
            if found is None or done(found):
                return found
            self._send(f"update {what}", lambda: start(found), region, gone_ok=True)
            after = self.settled(what, read, region)
            if after is not None and (failed := failed_state(after)):
                raise CloudError(
                    self.call.target,
                    f"update {what}",
                    f"its operation ended in provisioningState {failed}",
                    region=region,
                )
            return after

        return self._retrying(attempt)

    def _made_meanwhile(self, what: str, read: Callable[[], T], judge: Judge[T], region: str | None) -> bool:
        """After a refused PUT: whether the resource is now being made, or made as wanted, by someone
        else (ARM's providers refuse a PUT that meets a running operation with 409 and various codes)."""
        found = self.call.find(f"get {what}", read, region)
        if found is None:
            return False
        return state_of(found).lower() in IN_PROGRESS or (judge(found) is True and not failed_state(found))

    def delete(
        self,
        what: str,
        start: Callable[[], object],
        *,
        read: Callable[[], T] | None = None,
        doomed: Callable[[T], bool] | None = None,
        region: str | None = None,
    ) -> bool:
        """Delete `what` (a 404 is done). With `read` and `doomed`, only while `doomed(found)` holds;
        False when it was left alone because it changed meanwhile."""

        def attempt() -> bool:
            if read is not None and doomed is not None:
                found = self.settled(what, read, region)
                if found is None:
                    return True
                if not doomed(found):
                    self.call.progress.note(f"{what} changed meanwhile (another run?): left as it is")
                    return False
            self._send(f"delete {what}", start, region, gone_ok=True)
            return True

        return self._retrying(attempt)

    def _send(
        self, operation: str, start: Callable[[], object], region: str | None, gone_ok: bool = False
    ) -> None:
        try:
            with azure_errors(self.call.target, operation, region):
                start()
        except CloudError as exc:
            if exc.code in GONE and (gone_ok or exc.code == "ResourceNotFound"):
                # a DELETE of what is gone; or a create's own final read, not visible yet (eventual
                # consistency: the read that follows waits for it)
                return
            if exc.retryable:
                raise _Transient(exc) from exc
            raise

    def _retrying(self, attempt: Callable[[], T]) -> T:
        def wait_hint(exc: BaseException) -> float | None:
            cause = exc.error.__cause__ if isinstance(exc, _Transient) else None
            return retry_after(cause) if cause is not None else None

        try:
            return self.call.retry.call(attempt, lambda exc: isinstance(exc, _Transient), wait_hint)
        except _Transient as exc:
            error: ImgpubError = exc.error
            raise error from exc.error.__cause__
