from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("camera", "seq", "ts_capture_ms", "jpeg", "width", "height")
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_CAPTURE_MS_FIELD_NUMBER: _ClassVar[int]
    JPEG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    camera: str
    seq: int
    ts_capture_ms: int
    jpeg: bytes
    width: int
    height: int
    def __init__(self, camera: _Optional[str] = ..., seq: _Optional[int] = ..., ts_capture_ms: _Optional[int] = ..., jpeg: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x", "y", "w", "h")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    w: int
    h: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., w: _Optional[int] = ..., h: _Optional[int] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("camera", "frame_seq", "ts_capture_ms", "face_index", "faces_in_frame", "box", "score", "crop", "ts_detect_ms", "frame_width", "frame_height")
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    FRAME_SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_CAPTURE_MS_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    FACES_IN_FRAME_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    TS_DETECT_MS_FIELD_NUMBER: _ClassVar[int]
    FRAME_WIDTH_FIELD_NUMBER: _ClassVar[int]
    FRAME_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    camera: str
    frame_seq: int
    ts_capture_ms: int
    face_index: int
    faces_in_frame: int
    box: Box
    score: float
    crop: bytes
    ts_detect_ms: int
    frame_width: int
    frame_height: int
    def __init__(self, camera: _Optional[str] = ..., frame_seq: _Optional[int] = ..., ts_capture_ms: _Optional[int] = ..., face_index: _Optional[int] = ..., faces_in_frame: _Optional[int] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., score: _Optional[float] = ..., crop: _Optional[bytes] = ..., ts_detect_ms: _Optional[int] = ..., frame_width: _Optional[int] = ..., frame_height: _Optional[int] = ...) -> None: ...

class EmotionEvent(_message.Message):
    __slots__ = ("camera", "frame_seq", "face_index", "ts_capture_ms", "ts_event_ms", "box", "label", "score", "scores", "model", "model_version", "detector_score", "faces_in_frame", "track_id", "smoothed_label", "smoothed_score", "uncertain")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    FRAME_SEQ_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TS_CAPTURE_MS_FIELD_NUMBER: _ClassVar[int]
    TS_EVENT_MS_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_SCORE_FIELD_NUMBER: _ClassVar[int]
    FACES_IN_FRAME_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    SMOOTHED_LABEL_FIELD_NUMBER: _ClassVar[int]
    SMOOTHED_SCORE_FIELD_NUMBER: _ClassVar[int]
    UNCERTAIN_FIELD_NUMBER: _ClassVar[int]
    camera: str
    frame_seq: int
    face_index: int
    ts_capture_ms: int
    ts_event_ms: int
    box: Box
    label: str
    score: float
    scores: _containers.ScalarMap[str, float]
    model: str
    model_version: int
    detector_score: float
    faces_in_frame: int
    track_id: str
    smoothed_label: str
    smoothed_score: float
    uncertain: bool
    def __init__(self, camera: _Optional[str] = ..., frame_seq: _Optional[int] = ..., face_index: _Optional[int] = ..., ts_capture_ms: _Optional[int] = ..., ts_event_ms: _Optional[int] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., label: _Optional[str] = ..., score: _Optional[float] = ..., scores: _Optional[_Mapping[str, float]] = ..., model: _Optional[str] = ..., model_version: _Optional[int] = ..., detector_score: _Optional[float] = ..., faces_in_frame: _Optional[int] = ..., track_id: _Optional[str] = ..., smoothed_label: _Optional[str] = ..., smoothed_score: _Optional[float] = ..., uncertain: _Optional[bool] = ...) -> None: ...
