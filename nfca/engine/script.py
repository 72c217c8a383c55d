"""A feeder's OpenDSS script, read by nfca rather than by OpenDSS, so that reading it has no side
effect.

OpenDSS runs every command of a file it is given: a feeder file can start a program (`Set
Editor=...` then `Show`), overwrite files (`Export`, `Save`), change folders (`CD`, `Set
DataPath`) or send it into an endless `Redirect` loop. nfca therefore reads the files itself:
it follows `Redirect` and `Compile` (so a loop is named, with file and line, before anything
runs), and hands OpenDSS one command at a time, only when its verb is on an allow-list (and,
for `Set`, its option too). Every command that runs a program, shows, plots, exports, saves,
dumps or changes a folder is refused naming its file and line.

The line is split into parameters exactly as OpenDSS's own parser does (`ParserDel.pas`:
whitespace and `,` `=` delimit, `"..."` `'...'` `(...)` `[...]` `{...}` quote, `!` and `//`
start a comment, and a `/*` line opens a block comment closed by the first line holding `*/`),
and verbs and options are looked up as OpenDSS looks them up: the exact name, else the first
name in OpenDSS's own list that starts with what was written (`Sh` is `Show`).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nfca.errors import FeederError

_QUOTES = {"(": ")", '"': '"', "'": "'", "[": "]", "{": "}"}

# Verbs a feeder file may use: build and edit the circuit, select, solve.
ALLOWED_COMMANDS = frozenset(
    {
        "new",
        "edit",
        "more",
        "m",
        "~",
        "set",
        "solve",
        "calcvoltagebases",
        "setkvbase",
        "makebuslist",
        "buscoords",
        "latlongcoords",
        "clear",
        "enable",
        "disable",
        "open",
        "close",
        "select",
        "batchedit",
        "interpolate",
        "//",
    }
)
_FOLLOWED = frozenset({"redirect", "compile"})  # read by nfca itself, never passed to OpenDSS
_WHY = {  # refused verbs, by what they would do
    "runs a program": {"fileedit", "doscmd", "formedit", "panel", "comhelp"},
    "shows or plots a result": {
        "show",
        "plot",
        "visualize",
        "di_plot",
        "comparecases",
        "yearlycurves",
        "summary",
        "about",
        "help",
        "?",
    },
    "writes files": {
        "export",
        "save",
        "dump",
        "exportoverloads",
        "exportvviolations",
        "closedi",
        "obfuscate",
        "cvrtloadshapes",
        "alignfile",
        "uuids",
    },
    "changes the working folder": {"cd"},
}
# `Set` options a feeder file may use: solution settings, voltage bases, selection.
ALLOWED_OPTIONS = frozenset(
    {
        "type",
        "element",
        "hour",
        "sec",
        "year",
        "frequency",
        "stepsize",
        "mode",
        "random",
        "number",
        "time",
        "class",
        "object",
        "circuit",
        "tolerance",
        "maxiterations",
        "miniterations",
        "h",
        "loadmodel",
        "loadmult",
        "normvminpu",
        "normvmaxpu",
        "emergvminpu",
        "emergvmaxpu",
        "%mean",
        "%stddev",
        "ldcurve",
        "%growth",
        "genkw",
        "genpf",
        "genmult",
        "capkvar",
        "addtype",
        "allowduplicates",
        "zonelock",
        "ueweight",
        "lossweight",
        "ueregs",
        "lossregs",
        "voltagebases",
        "algorithm",
        "trapezoidal",
        "autobuslist",
        "controlmode",
        "defaultdaily",
        "defaultyearly",
        "allocationfactors",
        "cktmodel",
        "pricesignal",
        "pricecurve",
        "terminal",
        "basefrequency",
        "harmonics",
        "maxcontroliter",
        "bus",
        "keeplist",
        "reduceoption",
        "%normal",
        "cfactors",
        "numallociterations",
        "defaultbasefrequency",
        "loadshapeclass",
        "earthmodel",
        "neglectloady",
        "keepload",
        "zmag",
        "seasonrating",
        "seasonsignal",
        "linetypes",
        "longlinecorrection",
    }
)
_OPTION_WHY = {
    "runs a program": {"editor"},
    "changes the working folder": {"datapath"},
    "writes files": {
        "demandinterval",
        "diverbose",
        "casename",
        "log",
        "recorder",
        "overloadreport",
        "voltexceptionreport",
        "showexport",
        "querylog",
        "tracecontrol",
        "sampleenergymeters",
        "eventlogdefault",
        "showreports",
        "concatenatereports",
        "registryupdate",
    },
}
# Properties whose value is a data file (a load shape's multipliers, a curve's points), read by
# OpenDSS: relative names are made absolute against the folder of the file that names them.
_FILE_PROPERTIES = frozenset({"csvfile", "sngfile", "dblfile", "pqcsvfile"})
_FILE_IN_ARRAY = re.compile(r"^\s*(file|sngfile|dblfile)\s*=\s*(.*?)\s*$", re.IGNORECASE | re.DOTALL)
_NOT_A_NUMBER = re.compile(r"^[+-]?(nan|inf|infinity)$", re.IGNORECASE)
# Properties that name things (buses, codes, shapes): "nan" or "inf" there is a name, not a number.
_NAMING = re.compile(
    r"^(bus|like|linecode|geometry|spacing|wire|cncable|tscable|conductor|daily|yearly|duty|"
    r"growth|spectrum|element|object|transformer|monitoredobj|switchedobj|regcontrol|capacitor|"
    r"branch|kvbase|circuit|class|type)",
    re.IGNORECASE,
)
MAX_FILE_BYTES = 256 * 2**20
MAX_DEPTH = 64


@dataclass(frozen=True)
class Command:
    """One command for OpenDSS, with where it was written (innermost file first in `at`)."""

    text: str
    verb: str  # OpenDSS's name of the command, lower case ("" for a property assignment)
    at: tuple[tuple[Path, int], ...]  # (file, line): the command's own, then each Redirect that led to it
    shown: bool  # whether the file lies in the feeder's folder (only then is its content quoted)

    @property
    def where(self) -> str:
        """`F line N`, and the Redirect that led there when it is another file."""
        (f, n), outer = self.at[0], self.at[1:]
        text = f"{f} line {n}"
        if outer:
            text += f" (redirected from {outer[-1][0].name} line {outer[-1][1]})"
        return text

    def excerpt(self, limit: int = 80) -> str:
        """The command as written, short, or nothing for a file outside the feeder's folder."""
        if not self.shown:
            return ""
        one = " ".join(self.text.split())
        return one if len(one) <= limit else one[: limit - 1] + "…"


def parameters(line: str) -> list[tuple[str, str]]:
    """(name, value) of each parameter of one command line, as OpenDSS's parser splits it."""
    buf = line + " "
    n = len(buf)
    pos = _skip_white(buf, 0)
    out: list[tuple[str, str]] = []
    while pos < n:
        token, pos, last = _token(buf, pos, " ")
        name = ""
        if last == "=":
            name = token
            token, pos, last = _token(buf, pos, last)
        if not name and not token:
            break
        out.append((name, token))
    return out


_WHITE = re.compile(r"[ \t]*")
_STOP = re.compile(r"[ \t,=!]|//")  # what ends an unquoted token: a delimiter or a comment


def _skip_white(buf: str, pos: int) -> int:
    return _WHITE.match(buf, pos, len(buf) - 1).end()


def _token(buf: str, pos: int, last: str) -> tuple[str, int, str]:
    """OpenDSS's TDSSParser.GetToken: the token at `pos`, the position after it and the delimiter.
    (`buf` ends with the space OpenDSS appends; its last character is never part of a token.)"""
    n = len(buf)
    if pos >= n:
        return "", pos, last
    if buf[pos] in _QUOTES:  # to the matching end quote, no nesting
        end = buf.find(_QUOTES[buf[pos]], pos + 1, n - 1)
        token = buf[pos + 1 : end if end >= 0 else n - 1]
        pos = end + 1 if end >= 0 else n - 1
    else:
        stop = _STOP.search(buf, pos, n - 1)
        end = stop.start() if stop else n - 1
        if stop:
            ch = buf[end]
            last = "!" if ch in "!/" else (ch if ch in ",=" else " ")
        token, pos = buf[pos:end], end
    if last == "!":
        return token, n, last
    if last == " ":
        pos = _skip_white(buf, pos)
    if buf[pos] in ",=":
        last = buf[pos]
        pos += 1
    return token, _skip_white(buf, pos), last


def lookup(word: str, names: tuple[str, ...]) -> str:
    """OpenDSS's command (or option) lookup: the exact name, else the first that starts with
    `word`; "" when none does. `names` in OpenDSS's own order, lower case."""
    w = word.lower()
    if not w:
        return ""
    if w in names:
        return w
    return next((n for n in names if n.startswith(w)), "")


def read_script(
    master: Path, commands: tuple[str, ...], options: tuple[str, ...], shown_as: Path | None = None
) -> list[Command]:
    """Every command of the feeder `master` and the files it redirects to, in order, checked.

    `commands` and `options` are OpenDSS's lists (in its order, lower case), from the engine
    that will run the commands. Raise FeederError naming the file and line of the first command
    refused, a Redirect loop, a missing or unreadable file. Messages name the files as the user
    named the master (`shown_as`, default `master`).
    """
    master = Path(master).absolute()
    reader = _Reader(master, Path(shown_as or master), commands, options)
    reader.read(master, reader.given, ())
    return reader.out


class _Reader:
    def __init__(self, master: Path, given: Path, commands: tuple[str, ...], options: tuple[str, ...]):
        self.given = given
        self.folder = master.resolve().parent
        self.commands, self.options = commands, options
        self.out: list[Command] = []
        self.cwd = [self.folder]  # OpenDSS's current folder: Redirect returns from it, Compile stays
        self.stack: list[Path] = []  # files being read, outermost first

    def shown_as(self, p: Path) -> Path:
        """How a file is named in messages: beside the master as the user named it, when inside its folder."""
        return self.given.parent / p.relative_to(self.folder) if _inside(p, self.folder) else p

    def name(self, p: Path) -> str:
        return str(p.relative_to(self.folder)) if _inside(p, self.folder) else str(p)

    def read(self, path: Path, shown_as: Path, chain: tuple[tuple[Path, int], ...]) -> None:
        lines = _lines(path, shown_as, chain, self.folder)
        shown = _inside(path, self.folder)
        self.stack.append(path)
        block = False
        for k, raw in enumerate(lines, 1):
            if block:  # OpenDSS skips from a line starting with /* to the first line holding */
                block = "*/" not in raw
                continue
            if raw.startswith("/*"):
                block = "*/" not in raw
                continue
            params = parameters(raw)
            if not params:
                continue
            cmd = Command(raw, "", ((shown_as, k), *chain), shown)
            name, value = params[0]
            verb = lookup(value, self.commands) if not name else ""
            if verb in _FOLLOWED:
                self.follow(cmd, verb, params[1:])
            else:
                self.out.append(_checked(cmd, verb, name, params, self.options, self.cwd[-1]))
        self.stack.pop()

    def follow(self, cmd: Command, verb: str, params: list[tuple[str, str]]) -> None:
        target = _target(params, self.cwd[-1], cmd)
        if target in self.stack:
            trail = self.stack[self.stack.index(target) :] + [target]
            raise FeederError(f"{cmd.where}: Redirect loop: {' -> '.join(self.name(p) for p in trail)}")
        if len(self.stack) >= MAX_DEPTH:
            raise FeederError(f"{cmd.where}: Redirect nested more than {MAX_DEPTH} files deep")
        self.cwd.append(target.parent)
        self.read(target, self.shown_as(target), cmd.at)
        if verb == "redirect":  # Compile keeps the folder it moved to, as in OpenDSS
            self.cwd.pop()


def _lines(path: Path, shown_as: Path, chain, folder: Path) -> list[str]:
    where = f"{chain[0][0]} line {chain[0][1]}: " if chain else ""
    try:
        st = path.stat()
    except OSError as exc:
        raise FeederError(f"{where}{shown_as}: the file cannot be read ({exc.strerror or exc})") from None
    if not path.is_file():
        raise FeederError(f"{where}{shown_as}: not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise FeederError(f"{where}{shown_as}: {st.st_size / 2**20:.0f} MB is too large for a feeder file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FeederError(f"{where}{shown_as}: the file cannot be read ({exc.strerror or exc})") from None
    if b"\x00" in data:
        raise FeederError(f"{where}{shown_as}: not a text file (it holds binary data)")
    # Lines end at LF, CR LF or CR, as OpenDSS's Readln reads them.
    raw = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    lines = []
    for k, b in enumerate(raw, 1):
        try:
            lines.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            shown = f" ('{b.decode('utf-8', 'replace').strip()[:60]}')" if _inside(path, folder) else ""
            raise FeederError(
                f"{shown_as} line {k} is not UTF-8 text{shown}: save the feeder's files as UTF-8"
            ) from None
    return lines


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _target(params: list[tuple[str, str]], cwd: Path, cmd: Command) -> Path:
    """The file a Redirect or Compile names, as OpenDSS finds it (adding .dss when it has no suffix)."""
    name = next((v for _, v in params if v), "")
    if not name:
        raise FeederError(f"{cmd.where}: Redirect names no file")
    path = (cwd / name) if not os.path.isabs(name) else Path(name)
    if not path.exists() and not path.suffix and path.with_suffix(".dss").exists():
        path = path.with_suffix(".dss")
    if not path.exists():
        hint = _nearest(path) if cmd.shown and path.parent.resolve() == cwd.resolve() else ""
        raise FeederError(f'{cmd.where}: Redirect file not found: "{name}"{hint}')
    return path.resolve()


def _nearest(path: Path) -> str:
    """' (the folder has "loadshapes.txt" ...)' when a file of nearly that name is beside it:
    names are case-sensitive here, not on the Windows machine the export may come from."""
    try:
        names = [f.name for f in path.parent.iterdir() if f.is_file()]
    except OSError:
        return ""
    same = [n for n in names if n.lower() == path.name.lower()]
    if same:
        return f' (the folder has "{same[0]}": file names are case-sensitive here)'
    close = difflib.get_close_matches(path.name.lower(), [n.lower() for n in names], n=1, cutoff=0.8)
    return f' (the folder has "{next(n for n in names if n.lower() == close[0])}")' if close else ""


def _checked(
    cmd: Command, verb: str, name: str, params: list[tuple[str, str]], options: tuple[str, ...], cwd: Path
) -> Command:
    """The command ready for OpenDSS (data files made absolute), or FeederError saying why not."""
    first = params[0][1]
    if any(v.startswith("@") and len(v) > 1 for _, v in params):
        raise FeederError(f"{cmd.where}: parser variables (@name) are not supported{_quote(cmd)}")
    if verb == "" and not name:
        raise FeederError(f'{cmd.where}: Unknown command "{_short(first) if cmd.shown else "…"}"{_quote(cmd)}')
    if verb == "":  # Class.name.property=value: an edit
        _check_values(cmd, params)
        return Command(_with_files(cmd, params, cwd), verb, cmd.at, cmd.shown)
    if verb not in ALLOWED_COMMANDS:
        why = next((w for w, verbs in _WHY.items() if verb in verbs), None)
        reason = f": it {why}" if why else " (only commands that build and solve a circuit are)"
        raise FeederError(f"{cmd.where}: command '{_short(first)}' ({verb}) is not allowed in a feeder file{reason}")
    if verb == "set":
        for opt, value in params[1:]:
            _check_option(cmd, opt, value, options)
    if verb == "clear" and any(v for _, v in params[1:]):
        raise FeederError(
            f"{cmd.where}: 'Clear {_short(params[1][1])}' is not allowed in a feeder file (plain 'Clear' is)"
        )
    if verb in ("new", "edit", "more", "m", "~", "batchedit"):
        _check_values(cmd, params[1:])
        if verb == "new":
            _check_name(cmd, params[1:])
    if verb in ("buscoords", "latlongcoords"):
        return Command(_with_coordinate_file(cmd, params, cwd), verb, cmd.at, cmd.shown)
    return Command(_with_files(cmd, params, cwd), verb, cmd.at, cmd.shown)


def _check_option(cmd: Command, opt: str, value: str, options: tuple[str, ...]) -> None:
    if not opt:
        raise FeederError(f"{cmd.where}: Set takes option=value pairs, got '{_short(value)}'{_quote(cmd)}")
    full = lookup(opt, options)
    if not full:
        raise FeederError(f"{cmd.where}: Set: unknown option '{_short(opt)}'")
    if full not in ALLOWED_OPTIONS:
        why = next((w for w, opts in _OPTION_WHY.items() if full in opts), "")
        reason = f": it {why}" if why else " (it is not needed to describe a feeder)"
        raise FeederError(f"{cmd.where}: 'Set {_short(opt)}' ({full}) is not allowed in a feeder file{reason}")
    if _NOT_A_NUMBER.match(value.strip()):
        raise FeederError(f"{cmd.where}: Set {_short(opt)}={_short(value)} is not a number OpenDSS can use")


def _check_values(cmd: Command, params: list[tuple[str, str]]) -> None:
    """NaN and infinity are refused: OpenDSS would take them and nfca would compute with them."""
    for name, value in params:
        low = value.lower()
        if ("nan" not in low and "inf" not in low) or _NAMING.match(name):
            continue
        if any(_NOT_A_NUMBER.match(x) for x in re.split(r"[\s,|]+", value.strip("()[]{}\"' "))):
            what = f"{_object(cmd, params)}{' ' if _object(cmd, params) else ''}{_short(name) + '=' if name else ''}"
            raise FeederError(f"{cmd.where}: {what}{_short(value)} is not a number (NaN and infinity are refused)")


def _object(cmd: Command, params: list[tuple[str, str]]) -> str:
    first = params[0]
    if first[0].lower() in ("", "object") and "." in first[1]:
        return first[1]
    return ""


def _check_name(cmd: Command, params: list[tuple[str, str]]) -> None:
    """OpenDSS names some files after elements (a load shape saved, a monitor's file): a name that
    climbs out of the engine's folder is refused."""
    if params and params[0][0].lower() in ("", "object"):
        obj = params[0][1]
        name = obj.split(".", 1)[-1]
        if name.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", name):
            raise FeederError(f"{cmd.where}: element name '{_short(obj)}' is a path out of its folder: not allowed")


def _with_files(cmd: Command, params: list[tuple[str, str]], cwd: Path) -> str:
    """The command with every data file it names made absolute (and checked to be a file)."""
    text = cmd.text
    for name, value in params:
        m = _FILE_IN_ARRAY.match(value)
        if m:
            new = _data_file(cmd, m.group(2), cwd)
            text = _replace_value(text, value, f"{m.group(1)}={new}")
        elif name.lower() in _FILE_PROPERTIES:
            text = _replace_value(text, value, _data_file(cmd, value, cwd))
        elif ("/" in value or "\\" in value) and os.path.exists(value) and not os.path.isfile(value):
            raise FeederError(f"{cmd.where}: {_short(value) if cmd.shown else 'a value'} is not a regular file")
    return text


def _with_coordinate_file(cmd: Command, params: list[tuple[str, str]], cwd: Path) -> str:
    name, value = next(((n, v) for n, v in params[1:] if v), ("", ""))
    if not value:
        raise FeederError(f"{cmd.where}: {params[0][1]} names no file")
    return _replace_value(cmd.text, value, _data_file(cmd, value, cwd))


def _data_file(cmd: Command, name: str, cwd: Path) -> str:
    path = Path(name.strip().strip("\"'")) if name.strip() else Path()
    path = path if path.is_absolute() else cwd / path
    if not path.is_file():
        missing = "not found" if not path.exists() else "not a regular file"
        hint = _nearest(path) if cmd.shown and not path.exists() and path.parent.resolve() == cwd.resolve() else ""
        raise FeederError(
            f"{cmd.where}: data file {_short(name) if cmd.shown else ''} {missing}{hint}".replace("  ", " ")
        )
    return str(path.resolve())


def _replace_value(text: str, old: str, new: str) -> str:
    """`text` with the value `old` replaced by the quoted absolute path `new` (once)."""
    quoted = f'"{new}"' if '"' not in new else f"'{new}'"
    for form in (f"({old})", f"[{old}]", f"{{{old}}}", f'"{old}"', f"'{old}'", old):
        if form in text:
            inner = quoted if form == old else form[0] + new + form[-1]
            return text.replace(form, inner, 1)
    return text


def _short(text: str, limit: int = 40) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _quote(cmd: Command) -> str:
    text = cmd.excerpt()
    return f" in '{text}'" if text else ""
