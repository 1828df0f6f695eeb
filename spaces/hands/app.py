"""Hugging Face Space: controlsprint Hands. The app is `controlsprint demo hands`'s, over the default model."""

from controlsprint.demos.launch import launch_space, space_demo

demo = space_demo("hands")  # builds the page only: the model loads on the first request

if __name__ == "__main__":
    launch_space(demo)
