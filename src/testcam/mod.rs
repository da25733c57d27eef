//! RTSP test camera.
