"""Hugging Face Space: controlsprint Segmentation. The app is `controlsprint demo sam`'s, over the default model."""

from controlsprint.demos.launch import launch_space, space_demo

demo = space_demo("sam")  # builds the page only: the model loads on the first request

if __name__ == "__main__":
    launch_space(demo)
