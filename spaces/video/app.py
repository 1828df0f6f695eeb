"""Hugging Face Space: controlsprint Video. The app is `controlsprint demo video`'s, over the default model."""

from controlsprint.demos.launch import launch_space, space_demo

demo = space_demo("video")  # builds the page only: the model loads on the first request

if __name__ == "__main__":
    launch_space(demo)
