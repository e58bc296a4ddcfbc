"""Video frames in and out with PyAV (``av``: its wheel carries FFmpeg with H.264, so no system codec).

:class:`VideoReader` decodes a file's frames as RGB arrays, a damaged file becoming a one-line
:class:`~pose3d.config.ConfigError` after the frames that decoded; :class:`VideoWriter` and
:func:`write_video` encode equally sized RGB frames into an H.264 MP4.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from pose3d.config import ConfigError

DEFAULT_FPS = Fraction(25)  # an output video's rate when its input does not say


class VideoReader:
    """A video's frames, (H, W, 3) uint8 RGB, decoded by PyAV; ``frames`` the count its header
    gives (0 if none), ``fps`` its rate. A file that cannot be opened or decoded is a one-line
    ConfigError, raised after the frames decoded before the damage."""

    def __init__(self, path: Path):
        import av

        self.path = path
        try:
            self.container = av.open(str(path))
            self.stream = self.container.streams.video[0]
        except (av.error.FFmpegError, IndexError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read video {path} ({error_reason(error)}); expected a video file FFmpeg decodes") from None
        self.frames = int(self.stream.frames or 0)
        self.fps = Fraction(self.stream.average_rate) if self.stream.average_rate else DEFAULT_FPS

    def __iter__(self):
        import av

        count = 0
        try:
            for frame in self.container.decode(self.stream):
                yield frame.to_ndarray(format="rgb24")
                count += 1
        except av.error.FFmpegError as error:
            raise ConfigError(f"cannot decode video {self.path} after {count} frames ({error_reason(error)}); "
                              "expected a video file FFmpeg decodes (the frames before were written)") from None
        finally:
            self.container.close()
        if count == 0:
            raise ConfigError(f"video {self.path} has no frame that decodes; expected a video file FFmpeg decodes")


def error_reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:160] if text else type(error).__name__


class VideoWriter:
    """An H.264 MP4 (PyAV's own FFmpeg: no system codec) of equally sized RGB frames."""

    def __init__(self, path: Path, fps: Fraction = DEFAULT_FPS):
        self.path, self.fps = path, Fraction(fps)
        self.container = None

    def add(self, frame: np.ndarray) -> None:
        import av

        if self.container is None:
            self.container = av.open(str(self.path), mode="w")
            self.stream = self.container.add_stream("libx264", rate=self.fps)
            self.stream.height, self.stream.width = frame.shape[:2]
            self.stream.pix_fmt = "yuv420p"
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None


def write_video(path: Path, frames, fps: Fraction = DEFAULT_FPS) -> None:
    writer = VideoWriter(path, fps)
    for frame in frames:
        writer.add(frame)
    writer.close()
