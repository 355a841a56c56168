# The Python template of a sandpool session: started by the session's spawner with its runtime
# socket as stdin, it imports the preload list, then only forks. Each request names a command
# (argv, environment, working directory, CPU limit) and brings its stdin, stdout and stderr; the
# template hands it to a child (forked then, or ahead of it), waits for the child (through a
# pidfd) and tells the spawner its status and resource use as the spawner's own wait would. The
# child becomes what `python3 ARGS` would have been; a command this template cannot serve
# exactly is declined, and the spawner execs it instead.
#
# Forked ahead (argv[2] "fork-ahead": a session reset after the lease, never handed on): once
# it has served a command, the template forks the next child at once, which waits for its
# request on a socket of its own; the fork (a millisecond, copying the interpreter's page
# tables) is then off the next command's path. Only where the template is never shared: the
# waiting child is within reach of the lease's commands (signals, priority, limits of a
# process of the same user), and would be the next lease's command.
#
# Messages on the socket (one datagram each, fields separated by NUL bytes):
#   spawner -> template: b"R", cpu seconds, cwd, argc, argv..., env...  (+ 3 descriptors)
#   template -> spawner: b"Y" ready | b"F" reason (could not start)
#                        b"P" pid (served: sent by the child once it leads its session)
#                        b"W" pid errno (the child could not enter the working directory)
#                        b"D" pid reason (the child declined: exec it) | b"E" (no fork: exec it)
#                        b"X" pid status utime-us stime-us maxrss-KiB (a served child ended)
# Nothing here may stay visible to a served program but what a fresh interpreter has: the names
# this file defines live in the template's own `__main__`, which the child replaces.
_FRESH_MAIN = dict(globals())
import sys, os, _socket, _signal, gc

_THIS_FILE = "<sandpool template>"
# Imported by every interpreter's start (`site`): taken from there, not imported at each exit.
_ATEXIT = sys.modules.get("atexit")
_FORK_AHEAD = sys.argv[2] == "fork-ahead"
_PRELOAD = sys.argv[3:]
_PRESENT = set(sys.modules)
# What a command's environment must share with the template's for the interpreter's own start
# to have been the same: everything Python reads before it runs a program.
_STARTUP_VARIABLES = (b"LANG", b"LANGUAGE", b"TZ", b"HOME", b"PATH")
_MAX_REQUEST = 256 * 1024
# Where requests are received: one buffer for the template's life (a fresh one per request
# would be a mapping made and unmade on every command's path).
_BUFFER = bytearray(_MAX_REQUEST)


def _startup_part(entries):
    keep = {}
    for key, value in entries:
        if key.startswith(b"PYTHON") or key.startswith(b"LC_") or key in _STARTUP_VARIABLES:
            if key in keep:
                return None
            keep[key] = value
    return keep


def _load_prctl():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    sbrk = libc.sbrk
    sbrk.restype = ctypes.c_void_p
    sbrk.argtypes = [ctypes.c_long]

    class MmMap(ctypes.Structure):  # struct prctl_mm_map
        _fields_ = [(name, ctypes.c_uint64) for name in (
            "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
            "arg_start", "arg_end", "env_start", "env_end", "auxv")] + [
            ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]

    # The layout of this process's memory as its execve made it (fields 26-28 and 45-47 of
    # proc_pid_stat(5), counted here from the state, field 3), which a fork keeps.
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    at = lambda n: int(fields[n - 3])
    layout = MmMap(start_code=at(26), end_code=at(27), start_data=at(45), end_data=at(46), start_brk=at(47),
                   start_stack=at(28), auxv=0, auxv_size=0, exe_fd=0xFFFFFFFF)
    request = ctypes.addressof((ctypes.c_char * len(_BUFFER)).from_buffer(_BUFFER))

    def show_as(args_at, env_at, end):
        # What /proc/self/cmdline and /proc/self/environ show: this command's, as its own
        # execve would have laid them out, NUL-terminated one after the other; they are
        # where the request left them in the receive buffer, which the child keeps
        # (prctl(PR_SET_MM, PR_SET_MM_MAP), which needs no privilege when the executable
        # stays). On failure they show the template's.
        layout.brk = sbrk(0)
        layout.arg_start, layout.arg_end = request + args_at, request + env_at
        layout.env_start, layout.env_end = request + env_at, request + end
        prctl(35, 14, ctypes.addressof(layout), ctypes.sizeof(layout), 0)  # PR_SET_MM, PR_SET_MM_MAP

    return prctl, show_as


def _start():
    sock = _socket.socket(fileno=0)
    try:
        prctl, show_as = _load_prctl()
        # Not dumpable: a command of the session may neither trace it nor read its memory;
        # each served child becomes dumpable again, as an exec'd one is.
        if prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
            raise OSError("prctl(PR_SET_DUMPABLE) failed")
        for name in _PRELOAD:
            __import__(name)
        import resource
        limit_cpu = lambda seconds: resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
        import select
        poll = select.poll()
    except BaseException as e:
        sock.send(b"F" + ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace"))
        os._exit(1)
    # What this file imported for itself goes from the module table (a program that imports
    # one gets it afresh); what the preload list asked for stays.
    wanted = set(_PRELOAD)
    for name in list(sys.modules):
        if name not in _PRESENT and name.split(".")[0] not in {w.split(".")[0] for w in wanted}:
            del sys.modules[name]
    gc.collect()
    gc.freeze()
    # Every signal blocked: one sent to the template stays pending for ever, and changes
    # nothing (a fork starts with none pending). But SIGCHLD, which each child it forks
    # sends when it ends, and whose default action discards it.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals() - {_signal.SIGCHLD})
    sock.send(b"Y" + os.fsencode(sys.executable) + b"\0" + os.fsencode(sys.orig_argv[0]))
    return sock, (prctl, show_as), limit_cpu, poll


def _plan(argv, env):
    """How to run `argv` as `python3` would, or a reason to decline."""
    if argv[0] not in (os.fsencode(sys.executable), os.fsencode(sys.orig_argv[0])):
        return None, "another interpreter"
    if env != _ENVIRONMENT and _startup_part(e.partition(b"=")[::2] for e in env) != _STARTUP:
        return None, "environment"
    args = argv[1:]
    if not args:
        return ("stdin", None, [""]), None
    first = args[0]
    if first == b"-c" and len(args) >= 2:
        return ("code", args[1], ["-c"] + [os.fsdecode(a) for a in args[2:]]), None
    if first == b"-m" and len(args) >= 2:
        return ("module", os.fsdecode(args[1]), [os.fsdecode(a) for a in args[1:]]), None
    if first == b"-":
        return ("stdin", None, ["-"] + [os.fsdecode(a) for a in args[1:]]), None
    if first.startswith(b"-"):
        return None, "option"
    return ("file", os.fsdecode(first), [os.fsdecode(a) for a in args]), None


def _serve(sock, poll):
    global _STARTUP, _ENVIRONMENT
    _STARTUP = _startup_part(os.environb.items())
    # Its environment as a request lists one (most commands keep the default): a command's
    # that is the same needs neither comparing part by part nor setting.
    _ENVIRONMENT = [key + b"=" + value for key, value in os.environb.items()]
    children = {}  # pidfd -> pid of each served child not yet reaped
    spare = None  # the child forked ahead: (pidfd, pid, the socket its request goes on)
    poll.register(sock.fileno(), 1)  # POLLIN
    while True:
        for fd, _ in poll.poll():
            if fd in children:
                _reaped(sock, poll, children, fd)
            elif spare is not None and fd == spare[0]:
                # The child forked ahead ended before its request (killed by a command of the
                # lease): the next request gets one forked then.
                _drop_spare(poll, spare)
                spare = None
            else:
                served, spare = _request(sock, children, poll, spare)
                if served is not None:
                    return served


def _reaped(sock, poll, children, pidfd):
    # A served child ended: its status and resource use go to the spawner, as its own wait
    # would have had them.
    pid = children.pop(pidfd)
    poll.unregister(pidfd)
    os.close(pidfd)
    _, status, usage = os.wait4(pid, 0)
    sock.send(b"X%d %d %d %d %d" % (pid, status, int(usage.ru_utime * 1e6), int(usage.ru_stime * 1e6), usage.ru_maxrss))


def _drop_spare(poll, spare):
    pidfd, pid, to_spare = spare
    poll.unregister(pidfd)
    to_spare.close()
    os.close(pidfd)
    os.waitpid(pid, 0)


def _descriptors(ancillary):
    fds = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder) for i in range(0, len(payload) - 3, 4)]
    return fds


def _request(sock, children, poll, spare):
    # The template never looks into a request: every fork copies its memory, freed objects'
    # bytes included, and a command's arguments and environment (secrets, often) must not
    # reach a later command that way. It receives into one buffer, hands it on (to the child
    # forked ahead, or forks one), and clears the buffer before it forks again; the child reads
    # the request, and declines what it cannot serve.
    try:
        size, ancillary, _, _ = sock.recvmsg_into([_BUFFER], _socket.CMSG_SPACE(3 * 4))
    except InterruptedError:
        return None, spare
    if size == 0:
        os._exit(0)
    fds = _descriptors(ancillary)
    child = None
    if len(fds) == 3 and spare is not None:
        pidfd, pid, to_spare = spare
        try:
            with memoryview(_BUFFER) as request:
                to_spare.sendmsg([request[:size]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"".join(
                    fd.to_bytes(4, sys.byteorder) for fd in fds))])
            poll.unregister(pidfd)
            to_spare.close()
            child = (pidfd, pid)
        except OSError:
            _drop_spare(poll, spare)
        spare = None
    if len(fds) == 3 and child is None:
        try:
            pid = os.fork()
        except OSError:
            pid = -1
        if pid == 0:
            for pidfd in children:
                os.close(pidfd)
            return (fds, size), None
        if pid > 0:
            child = (os.pidfd_open(pid), pid)
    _BUFFER[:size] = bytes(size)
    for fd in fds:
        os.close(fd)
    if child is None:
        sock.send(b"E")
        return None, spare
    children[child[0]] = child[1]
    poll.register(child[0], 1)
    if _FORK_AHEAD:
        served, spare = _fork_spare(children)
        if served is not None:
            return served, None
        if spare is not None:
            poll.register(spare[0], 1)
    return None, spare


def _fork_spare(children):
    """Forks the next child ahead of its request: (its request, None) in the child, once it has
    come; (None, the spare) in the template; (None, None) if the fork failed."""
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return None, None
    if pid != 0:
        theirs.close()
        return None, (os.pidfd_open(pid), pid, ours)
    ours.close()
    for pidfd in children:
        os.close(pidfd)
    while True:
        try:
            size, ancillary, _, _ = theirs.recvmsg_into([_BUFFER], _socket.CMSG_SPACE(3 * 4))
            break
        except InterruptedError:
            pass
    fds = _descriptors(ancillary)
    theirs.close()
    if size == 0 or len(fds) != 3:
        os._exit(0)  # the template is gone
    return (fds, size), None


def _read_request(size):
    """The request in the buffer: (plan, argv, env, cwd, cpu, layout), or a reason to decline."""
    data = bytes(_BUFFER[:size])
    if data.endswith(b"\0"):
        data = data[:-1]
    fields = data.split(b"\0")
    try:
        cpu, cwd, argc = int(fields[1]), fields[2], int(fields[3])
        argv, env = fields[4:4 + argc], fields[4 + argc:]
        if len(argv) != argc or fields[0] != b"R":
            return None, "malformed request"
        # Where argv and the environment lie in the buffer.
        args_at = sum(len(f) + 1 for f in fields[:4])
        env_at = args_at + sum(len(a) + 1 for a in argv)
    except (ValueError, IndexError):
        return None, "malformed request"
    plan, why = _plan(argv, env)
    if plan is None:
        return None, why
    return (plan, argv, env, cwd, cpu, (args_at, env_at, size)), None


def _become(sock, prctl, limit_cpu, fds, size):
    request, why = _read_request(size)
    if request is None:
        sock.send(b"D%d %s" % (os.getpid(), why.encode()))
        os._exit(0)
    plan, argv, env, cwd, cpu, layout = request
    # A session of its own (as every command) and its working directory (a command that cannot
    # enter it does not start: the spawner says so as for an exec'd one), then the spawner
    # hears of it: a signal to its process group reaches it from now on.
    os.setsid()
    try:
        os.chdir(cwd)
    except OSError as e:
        sock.send(b"W%d %d" % (os.getpid(), e.errno or 5))
        os._exit(127)
    sock.send(b"P%d" % os.getpid())
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    sock.detach()
    if cpu > 0:
        limit_cpu(cpu)
    prctl, show_as = prctl
    prctl(4, 1, 0, 0, 0)
    show_as(*layout)
    if env != _ENVIRONMENT:
        wanted = [entry.partition(b"=")[::2] for entry in env if b"=" in entry[1:]]
        if wanted != list(os.environb.items()):
            os.environ.clear()
            for key, value in wanted:
                os.environb[key] = value
    # A child forked ahead may have been sent signals while it waited (blocked, so pending): a
    # command starts with none. Ignoring a pending signal discards it.
    for signum in _signal.sigpending():
        handler = _signal.signal(signum, _signal.SIG_IGN)
        if handler is not None:
            _signal.signal(signum, handler)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    # The finder of the working directory ('') listed the template's: found afresh. Those of
    # absolute directories check their directory's time before each use.
    sys.path_importer_cache.pop("", None)
    sys.orig_argv[:] = [os.fsdecode(a) for a in argv]
    kind, what, sys.argv[:] = plan[0], plan[1], plan[2]
    main = type(sys)("__main__")
    main.__dict__.update(_FRESH_MAIN)
    sys.modules["__main__"] = main
    return kind, what, main


def _run(kind, what, main):
    if kind == "module":
        sys.path[0] = os.getcwd()
        import runpy
        runpy._run_module_as_main(what, alter_argv=True)
        return
    if kind == "file":
        try:
            with open(what, "rb") as f:
                source = f.read()
        except OSError as e:
            sys.stderr.write("%s: can't open file %r: [Errno %d] %s\n" % (sys.orig_argv[0], what, e.errno, e.strerror))
            raise SystemExit(2)
        sys.path[0] = os.path.dirname(os.path.realpath(what))
        main.__file__ = what
        main.__cached__ = None
        from importlib.machinery import SourceFileLoader
        main.__loader__ = SourceFileLoader("__main__", what)
        code = compile(source, what, "exec")
    elif kind == "code":
        sys.path[0] = ""
        code = compile(what, "<string>", "exec")
    else:
        sys.path[0] = ""
        code = compile(sys.stdin.buffer.read(), "<stdin>", "exec")
    exec(code, main.__dict__)


def _exit_code(exit):
    # As the interpreter turns an uncaught SystemExit into an exit status.
    code = exit.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(str(code) + "\n")
    return 1


def _finish(code, interrupted=False):
    # What the interpreter's own exit does that a program can see: join the threads that are
    # not daemons, run the atexit functions, flush the standard streams. Not the teardown of
    # every object, which in a forked child copies each page it touches (milliseconds).
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    (_ATEXIT or __import__("atexit"))._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            code = 120
    if interrupted:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGINT)
    os._exit(code)


def _main():
    sock, prctl, limit_cpu, poll = _start()
    served = _serve(sock, poll)
    kind, what, main = _become(sock, prctl, limit_cpu, *served)
    del served
    try:
        _run(kind, what, main)
    except SystemExit as e:
        _finish(_exit_code(e))
    except BaseException as e:
        # As the interpreter reports an uncaught exception, without this file's frames.
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == _THIS_FILE:
            tb = tb.tb_next
        e.__traceback__ = tb
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, tb
        sys.excepthook(type(e), e, tb)
        _finish(1, interrupted=isinstance(e, KeyboardInterrupt))
    _finish(0)


_main()
