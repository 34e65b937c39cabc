"""MR series of a DICOM study and the proposal of which series is FLAIR, T1, T1ce and T2.

A :class:`Series` holds what the scanner recorded about one converted series (description, protocol,
sequence, echo / inversion / repetition times, the contrast-agent tag, frame of reference, grid).
:func:`guess_role` scores it with a small rule set - each rule that fires adds points and a sentence
saying why - and :func:`propose` picks one series per modality, preferring series that share one frame
of reference, then the higher score, a 3D acquisition, finer voxels and original (not derived) images.
The :class:`Proposal` is the table the command line prints and the window's series dialog edits; it has
no Qt in it.

Rules, in words:

* a description naming diffusion (DWI, ADC, DTI), susceptibility (SWI, T2*), a localizer, perfusion,
  angiography, fMRI, spectroscopy, STIR or a quantitative map, a matching DICOM ImageType, a 4D
  series or one of fewer than 5 slices is *not* one of the four;
* the words FLAIR / dark fluid / TIRM make a FLAIR, except with T1 ("Sag T1 FLAIR" is a T1-weighted
  inversion recovery); T1 / T1w / MPRAGE / SPGR / BRAVO / TFE / VIBE make a T1; T2 / T2w a T2;
* physics: TI > 1500 ms with TE > 60 ms is FLAIR; TI 300-1500 ms with TE < 30 ms is an inversion-prepared
  T1; without inversion, TE > 60 ms and TR > 1500 ms is T2 and TE < 30 ms with TR < 1000 ms is T1;
* a T1 becomes T1ce with "post", "+c", "gad", "gd", "contrast", "KM"... in the text or a
  ContrastBolusAgent tag, unless the text says "pre" / "native" / "w/o".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from braingui.discovery import MODALITIES, MODALITY_TITLES
from braingui.errors import CaseError

OTHER = "other"
"""The role of a series that is none of the four modalities."""

ROLE_TITLES = dict(MODALITY_TITLES, other="-")

_EXCLUDE: tuple[tuple[str, str], ...] = (
    (r"\b(dwi|dti|diff\w*|e?adc|trace|tensor|ep2d diff|colfa|b ?1000)\b", "diffusion (DWI / ADC / DTI)"),
    (r"\b(swi|swan|susc\w*|t2 ?\*|t2star|t2 star|hemo\w*|minip|mip|phase|pha)\b|t2\*",
     "susceptibility / T2* / projection"),
    (r"\b(loc|localizer|localiser|scout|survey|3 ?pl\w*|tri ?pilot|aahead\w*|aascout|calibration|"
     r"asset cal|sense ref|ref ?scan)\b", "localizer / calibration"),
    (r"\b(perf\w*|dsc|dce|asl|pcasl|pasl|pwi|cbf|cbv|rcbv)\b", "perfusion"),
    (r"\b(tof|angio\w*|mra|venogra\w*)\b", "angiography"),
    (r"\b(bold|fmri|resting|rest ?state)\b", "functional MRI"),
    (r"\b(mrs|spectro\w*|csi|svs)\b", "spectroscopy"),
    (r"\bstir\b", "STIR (fat-suppressed inversion recovery)"),
    (r"\b(t1 ?map|t2 ?map|map|maps|mapping|relaxometry|mdme|magic|fieldmap|field map|b0 ?map)\b",
     "quantitative map / field map"),
)
_EXCLUDE_IMAGE_TYPES = {"LOCALIZER": "localizer", "DIFFUSION": "diffusion", "ADC": "diffusion (ADC)",
                        "TRACE": "diffusion (trace)", "FA": "diffusion (FA)", "PROJECTION IMAGE": "projection",
                        "MIP": "projection", "P": "phase image", "PHASE": "phase image", "PERFUSION": "perfusion"}
_FLAIR = r"flair|dark ?fluid|\btirm\b|fluid att\w*"
_T1 = r"(?<![a-z0-9])t1(w|wi|c|ce|gd|n|post|pre|se|tse|fs|flair)?(?![a-z0-9])|mp ?rage|mpr ?sag|\bspgr\b|\bfspgr\b|" \
      r"\bbravo\b|\btfe\b|\bvibe\b|\bt1 ?flair\b"
_T2 = r"(?<![a-z0-9])t2(w|wi)?(?![a-z0-9*])"
_POST = r"\+ ?c\b|\+ ?gd|\+ ?km|\bc\+|\bpost\b|postcontrast|post ?gad|\bgad\w*|\bgd\b|\bgado\w*|contrast|\bce\b|" \
        r"\bt1c\b|\bt1ce\b|\bt1gd\b|\bt1post\b|\benh\w*|\bkm\b|\bmit km\b"
_PRE = r"\bpre\b|precontrast|pre ?gad|\bnative?\b|\bnativ\b|\bwithout\b|\bw/o\b|\bwo\b|non ?contrast|\bt1n\b|" \
       r"\bt1pre\b|\bplain\b|ohne km"
_DERIVED = r"reformat\w*|\breformatted\b"


@dataclass(frozen=True)
class Series:
    """One converted series of a study (what its DICOM headers say about it).

    Attributes:
        key: unique name in the study: the converted file's stem (``"5_T2W_TSE"``).
        number: SeriesNumber, or ``None``.
        description: SeriesDescription.
        protocol: ProtocolName.
        sequence: ScanningSequence (``"SE"``, ``"IR\\GR"``...).
        variant: SequenceVariant.
        sequence_name: SequenceName.
        image_type: ImageType values (``ORIGINAL``, ``PRIMARY``, ``DERIVED``...).
        contrast_agent: ContrastBolusAgent (0018,0010), empty when absent.
        echo_ms: EchoTime, milliseconds.
        inversion_ms: InversionTime, milliseconds.
        repetition_ms: RepetitionTime, milliseconds.
        acquisition: MRAcquisitionType (``"2D"`` / ``"3D"``), may be empty.
        frame_of_reference: FrameOfReferenceUID, empty when absent.
        shape: the converted volume's shape (3 or 4 values).
        spacing: voxel size in mm (3 values).
        file: the converted NIfTI file.
    """

    key: str
    number: int | None
    description: str = ""
    protocol: str = ""
    sequence: str = ""
    variant: str = ""
    sequence_name: str = ""
    image_type: tuple[str, ...] = ()
    contrast_agent: str = ""
    echo_ms: float | None = None
    inversion_ms: float | None = None
    repetition_ms: float | None = None
    acquisition: str = ""
    frame_of_reference: str = ""
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    file: Path | None = None

    @property
    def title(self) -> str:
        """``"5 T2W_TSE"``: the number and the description (the key when neither is known)."""
        text = " ".join(t for t in (str(self.number) if self.number is not None else "",
                                    self.description or self.protocol) if t)
        return text or self.key

    @property
    def voxel_mm3(self) -> float:
        """Voxel volume in mm^3 (infinite when unknown)."""
        if len(self.spacing) < 3:
            return float("inf")
        return float(self.spacing[0] * self.spacing[1] * self.spacing[2])

    @property
    def timing(self) -> str:
        """``"TE 93 ms, TR 6600 ms, TI 2500 ms"`` (the times that are known)."""
        parts = [f"{name} {value:.0f} ms" for name, value in
                 (("TE", self.echo_ms), ("TR", self.repetition_ms), ("TI", self.inversion_ms)) if value]
        return ", ".join(parts)


@dataclass(frozen=True)
class Guess:
    """What :func:`guess_role` makes of one series.

    Attributes:
        role: a modality (``flair``, ``t1``, ``t1ce``, ``t2``) or :data:`OTHER`.
        score: the evidence for that role (higher is surer; 0 when nothing matched).
        reasons: one sentence per rule that fired.
    """

    role: str
    score: float
    reasons: tuple[str, ...]


def _text(s: Series) -> str:
    raw = f"{s.description} | {s.protocol}".lower()
    return " " + re.sub(r"[_\-/,;:()\[\]|.]+", " ", raw.replace("w/o", " w/o ")).replace(" w o ", " w/o ") + " "


def _found(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(0).strip() if m else None


def guess_role(s: Series) -> Guess:
    """Score one series as FLAIR / T1 / T1ce / T2 / other from its text, tags and timing (see the module)."""
    text = _text(s)
    reasons: list[str] = []
    for pattern, what in _EXCLUDE:
        hit = _found(pattern, text)
        if hit:
            return Guess(OTHER, 5.0, (f"'{hit}' in the description: {what}",))
    for value in s.image_type:
        if value.upper() in _EXCLUDE_IMAGE_TYPES:
            return Guess(OTHER, 5.0, (f"DICOM ImageType {value}: {_EXCLUDE_IMAGE_TYPES[value.upper()]}",))
    if len(s.shape) > 3 and s.shape[3] > 1:
        return Guess(OTHER, 5.0, (f"4D series ({s.shape[3]} volumes): diffusion, perfusion or functional",))
    if len(s.shape) >= 3 and min(s.shape[:3]) < 5:
        return Guess(OTHER, 5.0, (f"only {min(s.shape[:3])} slices along an axis: a localizer or a single slice",))
    score = {"flair": 0.0, "t1": 0.0, "t2": 0.0, OTHER: 0.0}
    flair, t1, t2 = _found(_FLAIR, text), _found(_T1, text), _found(_T2, text)
    if flair and t1:
        score["t1"] += 3
        reasons.append(f"'{t1}' with '{flair}': a T1-weighted inversion recovery (T1 FLAIR), not a FLAIR")
    elif flair:
        score["flair"] += 3
        reasons.append(f"'{flair}' in the description")
    else:
        if t1:
            score["t1"] += 3
            reasons.append(f"'{t1}' in the description")
        if t2:
            score["t2"] += 3
            reasons.append(f"'{t2}' in the description")
    _physics(s, score, reasons)
    best = max(("flair", "t1", "t2", OTHER), key=lambda r: score[r])
    ranked = sorted(score.values(), reverse=True)
    if ranked[0] <= 0:
        return Guess(OTHER, 0.0, tuple(reasons) + ("no rule recognises this series",))
    if ranked[0] == ranked[1]:
        return Guess(OTHER, 0.0, tuple(reasons) + ("the rules disagree; choose its role by hand",))
    value = score[best]
    if best == "t1":
        contrast, why = _contrast(s, text)
        reasons += why
        if contrast > 0:
            best = "t1ce"
    derived = _found(_DERIVED, text) or ("DERIVED" if "DERIVED" in (v.upper() for v in s.image_type) else None)
    if derived:
        value -= 1
        reasons.append(f"{derived}: a derived / reformatted series (the original acquisition is preferred)")
    return Guess(best, value, tuple(reasons))


def _physics(s: Series, score: dict[str, float], reasons: list[str]) -> None:
    te, tr, ti = s.echo_ms, s.repetition_ms, s.inversion_ms
    if te is None:
        return
    if ti:
        if ti > 1500 and te > 60:
            score["flair"] += 2
            reasons.append(f"TI {ti:.0f} ms with long TE {te:.0f} ms: fluid-suppressed inversion recovery (FLAIR)")
        elif 300 <= ti <= 1500 and te < 30:
            score["t1"] += 2
            reasons.append(f"TI {ti:.0f} ms with short TE {te:.0f} ms: inversion-prepared T1 (MPRAGE, T1 FLAIR)")
        elif ti > 1500 and te < 30:
            score["t1"] += 1
            reasons.append(f"TI {ti:.0f} ms with short TE {te:.0f} ms: inversion-prepared gradient echo")
        elif ti < 300:
            score[OTHER] += 2
            reasons.append(f"short TI {ti:.0f} ms: fat-suppressed inversion recovery (STIR)")
        return
    if te > 60 and (tr is None or tr > 1500):
        score["t2"] += 2
        reasons.append(f"long TE {te:.0f} ms" + (f" and TR {tr:.0f} ms" if tr else "") + ": T2-weighted")
    elif te < 30 and tr is not None and tr < 1000:
        score["t1"] += 2
        reasons.append(f"short TE {te:.0f} ms and TR {tr:.0f} ms: T1-weighted")
    elif te < 30 and tr is not None and tr > 1500:
        score[OTHER] += 1
        reasons.append(f"short TE {te:.0f} ms with long TR {tr:.0f} ms: proton-density weighted")


def _contrast(s: Series, text: str) -> tuple[float, list[str]]:
    """Evidence that a T1 was acquired after contrast (> 0) or before it (<= 0), with reasons."""
    value, why = 0.0, []
    pre = _found(_PRE, text)
    post = _found(_POST, re.sub(_PRE, " ", text))  # "non contrast" is no evidence of contrast
    if post:
        value += 3
        why.append(f"'{post}' in the description: after contrast")
    if s.contrast_agent.strip():
        value += 2
        why.append(f"ContrastBolusAgent '{s.contrast_agent.strip()}' is set")
    if pre:
        value -= 4
        why.append(f"'{pre}' in the description: before contrast")
    return value, why


@dataclass
class Proposal:
    """Which series plays which role: the proposal, as the user may change it.

    Attributes:
        series: every series of the study, in series-number order.
        guesses: series key -> :class:`Guess`.
        assignment: modality -> series key (a modality may be missing).
    """

    series: list[Series]
    guesses: dict[str, Guess]
    assignment: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> Series:
        """The series with this key."""
        return next(s for s in self.series if s.key == key)

    def role_of(self, key: str) -> str | None:
        """The modality this series is assigned to, or ``None``."""
        return next((r for r, k in self.assignment.items() if k == key), None)

    def assign(self, key: str, role: str | None) -> None:
        """Give series ``key`` the modality ``role`` (``None``: no role); a role moves off its old series."""
        if role is not None and role not in MODALITIES:
            raise ValueError(f"unknown modality {role!r}")
        self.assignment = {r: k for r, k in self.assignment.items() if k != key and r != role}
        if role is not None:
            self.assignment[role] = key

    def missing(self) -> list[str]:
        """The modalities no series is assigned to."""
        return [m for m in MODALITIES if m not in self.assignment]

    def copy(self) -> "Proposal":
        return replace(self, assignment=dict(self.assignment))

    def rows(self) -> list[dict]:
        """One JSON-ready row per series: ``key``, ``number``, ``description``, ``role`` (assigned or
        ``None``), ``guess``, ``score``, ``why``, ``grid`` and ``timing``."""
        rows = []
        for s in self.series:
            g = self.guesses[s.key]
            rows.append({"key": s.key, "number": s.number, "description": s.description or s.protocol,
                         "role": self.role_of(s.key), "guess": g.role, "score": g.score, "why": list(g.reasons),
                         "grid": "x".join(str(d) for d in s.shape) + " @ " + "x".join(f"{v:.3g}" for v in s.spacing),
                         "timing": s.timing})
        return rows

    def format(self) -> str:
        """The proposal as a text table (series, description, proposed role, why)."""
        lines = [f"  {'series':>6}  {'description':<28} {'role':<6} why"]
        for row in self.rows():
            role = (ROLE_TITLES[row["role"]] if row["role"] else
                    f"({ROLE_TITLES[row['guess']]})" if row["guess"] in MODALITIES else "-")
            num = "" if row["number"] is None else str(row["number"])
            lines.append(f"  {num:>6}  {row['description'][:28]:<28} {role:<6} {'; '.join(row['why'])}")
        if any(r["role"] is None and r["guess"] in MODALITIES for r in self.rows()):
            lines.append("  (ROLE): the rules see this role here too, but another series was chosen")
        missing = self.missing()
        if missing:
            lines.append("  missing: " + ", ".join(MODALITY_TITLES[m] for m in missing)
                         + " (choose with --series-map flair=SERIES,t1=...,t1ce=...,t2=...)")
        return "\n".join(lines)


def propose(series: list[Series]) -> Proposal:
    """Guess each series' role and assign one series per modality.

    Candidates are grouped by frame of reference; the group that can fill the most modalities (then
    the highest total score) wins, so the four volumes come from one session when possible. Within it
    a modality goes to its highest-scoring series, then a 3D one, then the finest voxels, then original
    images over derived ones.
    """
    series = sorted(series, key=lambda s: (s.number is None, s.number or 0, s.key))
    guesses = {s.key: guess_role(s) for s in series}
    groups: dict[str, list[Series]] = {}
    for s in series:
        if guesses[s.key].role in MODALITIES:
            groups.setdefault(s.frame_of_reference, []).append(s)
    best: dict[str, str] = {}
    best_rank = (-1, -1.0)
    for members in groups.values():
        assignment = {}
        for role in MODALITIES:
            candidates = [s for s in members if guesses[s.key].role == role]
            if candidates:
                assignment[role] = max(candidates, key=lambda s: _preference(s, guesses[s.key])).key
        rank = (len(assignment), sum(guesses[k].score for k in assignment.values()))
        if rank > best_rank:
            best, best_rank = assignment, rank
    return Proposal(series, guesses, best)


def _preference(s: Series, g: Guess) -> tuple:
    derived = "DERIVED" in (v.upper() for v in s.image_type)
    return g.score, s.acquisition.upper() == "3D", -s.voxel_mm3, not derived, s.number or 0


def select(series: list[Series], selector: str, role: str) -> Series:
    """The series a ``--series-map`` value names: a series number, a description or a key.

    Raises:
        CaseError: nothing or more than one series matches (the message lists the series).
    """
    text = str(selector).strip()
    for match in (lambda s: s.key == text, lambda s: s.number is not None and str(s.number) == text,
                  lambda s: s.description.lower() == text.lower(), lambda s: s.protocol.lower() == text.lower()):
        found = [s for s in series if match(s)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CaseError(f"{role}={text} matches {len(found)} series ({', '.join(s.key for s in found)}); "
                            "name one by its key")
    listed = "; ".join(s.title for s in series)
    raise CaseError(f"{role}={text}: no series has this number or description (series: {listed})")


def parse_series_map(text: str) -> dict[str, str]:
    """``"flair=3,t1=Ax T1 pre,t1ce=7,t2=5"`` -> modality -> series selector (number or description).

    Raises:
        CaseError: an entry without ``=``, an unknown modality or one given twice.
    """
    out: dict[str, str] = {}
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        role, sep, value = item.partition("=")
        role = role.strip().lower()
        if not sep or not value.strip():
            raise CaseError(f"--series-map: {item!r} is not MODALITY=SERIES (e.g. flair=3,t1=5,t1ce=7,t2=4)")
        if role not in MODALITIES:
            raise CaseError(f"--series-map: unknown modality {role!r} (use {', '.join(MODALITIES)})")
        if role in out:
            raise CaseError(f"--series-map: {role} is given twice")
        out[role] = value.strip()
    return out
