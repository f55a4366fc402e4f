"""Executors: where the independent units of an experiment run.

An experiment splits its work into *units* (a null-model instance, a chunk of
replicas, ...) that depend only on one shared, read-only context (the network,
its signed graph, the solver options) and on the unit itself.  An executor maps
a plain function over the units and yields ``(unit, result)`` pairs **as they
finish**, so the caller can store each one at once (:class:`deepglass.store.RunDir`)
and an interrupted run loses nothing finished.

- :class:`InProcessExecutor` (default): one unit after the other, in this process.
- :class:`RayExecutor`: Ray tasks on a local Ray started on loopback, or on the
  cluster at ``address``; the shared context is shipped once (:func:`ray.put`).

Executors never choose seeds: a unit carries everything that determines its
result (experiments derive each unit's seed from the run seed and the unit's
identity, not from call order), so every executor returns the same numbers for
the same units, in whatever order they finish.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Callable, Iterable, Iterator

from .errors import DeepglassError, first_line

__all__ = ["Executor", "InProcessExecutor", "RayExecutor", "EXECUTORS", "get_executor"]


class Executor:
    """The executor interface: :meth:`map` and :meth:`close` (a context manager).

    Subclasses implement :meth:`map`.
    """

    name = "executor"

    def map(self, fn: Callable[[Any, Any], Any], units: Iterable[Any],
            shared: Any = None) -> Iterator[tuple[Any, Any]]:
        """Yield ``(unit, fn(shared, unit))`` for every unit, in completion order.

        Parameters
        ----------
        fn : callable
            ``fn(shared, unit) -> result``; a module-level function (Ray pickles
            it by reference, so it must be importable on the workers).
        units : iterable
            Picklable unit descriptions.
        shared : object
            Read-only context passed to every call (shipped once by Ray).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Run the units one after another in this process (the default).

    Examples
    --------
    >>> list(InProcessExecutor().map(lambda s, u: s * u, [1, 2], shared=10))
    [(1, 10), (2, 20)]
    """

    name = "inprocess"

    def map(self, fn, units, shared=None):
        for unit in units:
            yield unit, fn(shared, unit)


def _call(fn, shared, unit):
    # a Ray task: ``shared`` arrives dereferenced from the object store
    return fn(shared, unit)


class RayExecutor(Executor):
    """Run the units as Ray tasks (optional extra ``deepglass[ray]``).

    Parameters
    ----------
    address : str, optional
        A running Ray cluster (``"ray://host:10001"``, ``"host:6379"`` or
        ``"auto"``).  ``None`` starts a private local Ray bound to loopback
        (127.0.0.1, no dashboard), shut down again by :meth:`close`.
    num_cpus : int, optional
        CPUs of the local Ray (default: all); ignored with ``address``.
    max_in_flight : int, optional
        Tasks submitted ahead of the finished ones (default: twice the cluster's
        CPUs, or with ``num_gpus`` twice its GPUs), which bounds the results
        held in memory.
    num_gpus : float, optional
        GPUs each task asks Ray for (``--device cuda``: 1), so that Ray places
        units on GPU nodes, one per device, and sets ``CUDA_VISIBLE_DEVICES``
        for each.  ``None`` or 0: CPU tasks.

    Notes
    -----
    Each task asks for one CPU, so Ray sets ``OMP_NUM_THREADS=1`` in its
    workers: units run single-threaded side by side.  The shared context is
    put into the object store once per :meth:`map` call and every task receives
    a reference to it.  ``deepglass`` must be importable on the workers (on a
    local Ray it is the same Python environment).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 max_in_flight: int | None = None, num_gpus: float | None = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise DeepglassError("the Ray executor needs ray: pip install 'deepglass[ray]'") from None
        if num_cpus is not None and int(num_cpus) < 1:
            raise DeepglassError(f"num_cpus must be >= 1, got {num_cpus}")
        if max_in_flight is not None and int(max_in_flight) < 1:
            raise DeepglassError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if num_gpus is not None and (isinstance(num_gpus, bool) or float(num_gpus) < 0):
            raise DeepglassError(f"num_gpus must be >= 0, got {num_gpus}")
        if address is not None:
            probe_address(address)
        else:
            _check_no_address_space_limit()
        self.address = address
        self.num_cpus = num_cpus
        self.max_in_flight = max_in_flight
        self.num_gpus = float(num_gpus) if num_gpus else None
        self._started = False

    def task_options(self) -> dict:
        """The resources each task asks Ray for: one CPU, and ``num_gpus`` GPUs
        when set."""
        opts: dict = {"num_cpus": 1}
        if self.num_gpus:
            opts["num_gpus"] = self.num_gpus
        return opts

    def _window(self, resources: dict) -> int:
        if self.max_in_flight:
            return int(self.max_in_flight)
        key, per = ("GPU", self.num_gpus) if self.num_gpus else ("CPU", 1.0)
        return max(2, 2 * int(resources.get(key, 1) / per))

    def _ensure(self):
        import ray

        if ray.is_initialized():
            return ray
        kwargs = dict(include_dashboard=False, log_to_driver=False,
                      logging_level=logging.WARNING, configure_logging=True)
        try:
            if self.address is None:
                # a private local Ray on loopback only
                ray.init(num_cpus=self.num_cpus, _node_ip_address="127.0.0.1", **kwargs)
            else:
                ray.init(address=self.address, **kwargs)
        except Exception as exc:  # connection refused, bad address, ...
            where = self.address or "a local Ray"
            raise DeepglassError(f"cannot start or reach {where}: {first_line(exc)}") from None
        self._started = True
        return ray

    def map(self, fn, units, shared=None):
        ray = self._ensure()
        from .zoo.user_arch import SIBLING_MODULES

        for mod in SIBLING_MODULES:     # an architecture file's own imports, by value
            ray.cloudpickle.register_pickle_by_value(mod)
        remote = ray.remote(**self.task_options())(_call)
        try:
            ref, fn_ref = ray.put(shared), ray.put(fn)
        except Exception as exc:  # e.g. a network object that does not pickle
            raise DeepglassError(f"cannot ship the work to Ray: "
                                 f"{first_line(exc, typed=True)}") from None
        window = self._window(ray.cluster_resources())
        todo = iter(units)
        pending: dict = {}

        def submit() -> bool:
            try:
                unit = next(todo)
            except StopIteration:
                return False
            pending[remote.remote(fn_ref, ref, unit)] = unit
            return True

        try:
            while len(pending) < window and submit():
                pass
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for fut in done:
                    unit = pending.pop(fut)
                    try:
                        result = ray.get(fut)
                    except ray.exceptions.RayTaskError as exc:
                        # re-raise the task's own exception (DeepglassError stays one line)
                        cause = getattr(exc, "cause", None)
                        raise (cause if isinstance(cause, BaseException) else exc) from None
                    submit()
                    yield unit, result
        finally:
            for fut in pending:  # interrupted: drop the unfinished tasks
                try:
                    ray.cancel(fut, force=True)
                except Exception:  # pragma: no cover - best effort
                    pass

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def _check_no_address_space_limit() -> None:
    """Refuse to start a local Ray under an address-space limit (``ulimit -v``).

    Ray's own processes reserve far more virtual memory than they use; under
    such a limit they die with a native stack dump, or the driver waits for
    them forever (Ctrl-C ignored), and the survivors outlive the command.  A
    limit on resident memory (a cgroup) does not do this.

    Raises
    ------
    DeepglassError
        One line naming the limit and what to do.
    """
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return
    if soft != resource.RLIM_INFINITY:
        raise DeepglassError(f"a local Ray cannot start under an address-space limit (ulimit -v: "
                             f"{soft / 2**30:.1f} GiB), which its processes exceed at once: "
                             "lift it (ulimit -v unlimited; a memory cgroup is fine), or run "
                             "without --executor ray")


def probe_address(address: str, timeout: float = 5.0) -> None:
    """Refuse a Ray ``address`` that is not ``HOST:PORT`` (``ray://`` allowed)
    or where nothing accepts a TCP connection within ``timeout`` seconds.

    ``ray.init`` keeps retrying an unreachable cluster for minutes (a closed
    port on the local host: still waiting after 200 s), so a typo in
    ``--address`` would hang the command; one connect is cheap.  ``"auto"``
    (a cluster found through the environment) is left to Ray.

    Raises
    ------
    DeepglassError
        One line naming the address and why.
    """
    if address == "auto":
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DeepglassError(f"--address must look like HOST:PORT (a Ray cluster's head), "
                             f"got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise DeepglassError(f"cannot reach a Ray cluster at {address}: "
                             f"{exc.strerror or exc or type(exc).__name__}") from None


#: ``--executor`` name -> class
EXECUTORS = {"inprocess": InProcessExecutor, "ray": RayExecutor}


def get_executor(name: str | Executor | None = None, address: str | None = None,
                 device: str | None = None, **kwargs) -> Executor:
    """An executor by name (``"inprocess"`` or ``"ray"``), or ``name`` itself.

    ``address`` applies to Ray only (and implies it when ``name`` is None).
    ``device``: the units' device; a CUDA device makes Ray tasks ask for one
    GPU each (``num_gpus=1``) unless ``num_gpus`` is given.
    """
    if isinstance(name, Executor):
        return name
    if name is None:
        name = "ray" if address else "inprocess"
    if name not in EXECUTORS:
        raise DeepglassError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if name == "ray":
        if device is not None and str(device).startswith("cuda"):
            kwargs.setdefault("num_gpus", 1)
        return RayExecutor(address=address, **kwargs)
    if address:
        raise DeepglassError("--address applies to the ray executor only")
    return InProcessExecutor()

