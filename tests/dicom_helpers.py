"""Synthetic DICOM studies for the tests, written with pydicom from analytic volumes.

Each series samples one function of the patient (LPS, mm) coordinates at its own voxel centres, so
series on different grids show the same anatomy at the same world position, and a test can compute
what any voxel of any grid should hold without the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "PID-4711"
STUDY_DATE = "20240131"
MARKER_LPS = np.array([4.0, -6.0, 10.0])
"""Centre of a bright blob in every series (LPS mm); RAS is ``(-x, -y, z)``."""
MARKER_SIGMA_MM = 3.0


def anatomy(lps: np.ndarray, scale: float = 1000.0) -> np.ndarray:
    """The test 'patient': a gentle left-right ramp plus a Gaussian blob at :data:`MARKER_LPS`.

    Args:
        lps: ``(..., 3)`` patient coordinates in mm.

    Returns:
        ``lps.shape[:-1]`` float64 intensities (300..1000 for the default scale).
    """
    d2 = ((np.asarray(lps, dtype=np.float64) - MARKER_LPS) ** 2).sum(-1)
    return scale * (0.3 + 0.002 * lps[..., 0] + 0.7 * np.exp(-d2 / (2 * MARKER_SIGMA_MM ** 2)))


def write_series(folder, number: int, description: str, *, study_uid: str, frame_uid: str, rowdir=(1, 0, 0),
                 coldir=(0, 1, 0), origin=(-20.0, -30.0, -10.0), spacing=(2.0, 2.0, 3.0), shape=(24, 24, 12),
                 te: float = 10.0, tr: float = 500.0, ti: float | None = None, contrast: str | None = None,
                 sequence: str = "SE", acquisition: str = "2D", preamble: bool = True, func=anatomy) -> list[Path]:
    """Write one MR series, one file per slice.

    Args:
        folder: where the files go (created).
        number, description: SeriesNumber and SeriesDescription (also the ProtocolName).
        study_uid, frame_uid: StudyInstanceUID and FrameOfReferenceUID.
        rowdir, coldir: ImageOrientationPatient (direction of increasing column / row index).
        origin: ImagePositionPatient of the first slice (mm, LPS).
        spacing: (between rows, between columns, between slices) in mm.
        shape: (rows, columns, slices).
        te, tr, ti: echo, repetition and inversion times in ms.
        contrast: ContrastBolusAgent, if any.
        preamble: False writes files without the Part 10 preamble and file meta (they start with group 0008).
        func: intensity as a function of ``(..., 3)`` LPS coordinates.

    Returns:
        The files written.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rowdir, coldir = np.asarray(rowdir, dtype=float), np.asarray(coldir, dtype=float)
    normal = np.cross(rowdir, coldir)
    rows, cols, slices = shape
    dr, dc, dz = spacing
    series_uid = generate_uid()
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    paths = []
    for k in range(slices):
        ipp = np.asarray(origin, dtype=float) + k * dz * normal
        lps = ipp + c[..., None] * dc * rowdir + r[..., None] * dr * coldir
        pixels = np.clip(np.round(func(lps)), 0, 65535).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.Manufacturer, ds.MagneticFieldStrength = "MR", "SIEMENS", 3
        ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
        ds.StudyDate = ds.SeriesDate = STUDY_DATE
        ds.StudyTime, ds.AcquisitionTime = "101500", f"1015{number % 60:02d}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = "1", number, k + 1, 1
        ds.SeriesDescription = ds.ProtocolName = description
        ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = sequence, "NONE", acquisition
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.EchoTime, ds.RepetitionTime = te, tr
        if ti is not None:
            ds.InversionTime = ti
        if contrast:
            ds.ContrastBolusAgent = contrast
        ds.SliceThickness = ds.SpacingBetweenSlices = dz
        ds.ImagePositionPatient = [float(v) for v in ipp]
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([rowdir, coldir])]
        ds.PixelSpacing = [dr, dc]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.tobytes()
        path = folder / f"IM{number:03d}_{k:04d}.dcm"
        if preamble:
            ds.save_as(path, enforce_file_format=True)
        else:
            del ds.file_meta
            ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
        paths.append(path)
    return paths


T2_GRID = {"rowdir": (1, 0, 0), "coldir": (0, 0, -1), "origin": (-22.0, -30.0, 30.0), "spacing": (1.6, 1.6, 2.5),
           "shape": (26, 30, 22)}
"""The T2's grid: coronal, 1.6 x 1.6 x 2.5 mm, another shape - a different grid in the same frame."""


def write_study(folder) -> dict[str, int]:
    """A study of six series in one folder tree: the four modalities (the T2 on :data:`T2_GRID`), a DWI
    without Part 10 preamble, and a T2 from another frame of reference.

    Returns:
        name -> SeriesNumber (``flair``, ``t1``, ``t1ce``, ``t2``, ``dwi``, ``other_frame``).
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    study, frame = generate_uid(), generate_uid()
    common = {"study_uid": study, "frame_uid": frame}
    write_series(folder / "1", 2, "AX FLAIR", te=120, tr=9000, ti=2500, sequence="SE\\IR", **common)
    write_series(folder / "2", 3, "Ax T1 pre", te=10, tr=500, **common)
    write_series(folder / "3" / "deeper", 5, "T2W_TSE", te=100, tr=4000, **T2_GRID, **common)
    write_series(folder / "4", 7, "T1 MPRAGE POST GAD", te=3, tr=2000, ti=900, sequence="GR\\IR", acquisition="3D",
                 contrast="GADOVIST", **common)
    write_series(folder / "5", 1, "DWI", te=80, tr=5000, preamble=False, **common)
    write_series(folder / "6", 9, "T2 AX", te=100, tr=4000, study_uid=study, frame_uid=generate_uid())
    return {"flair": 2, "t1": 3, "t2": 5, "t1ce": 7, "dwi": 1, "other_frame": 9}
