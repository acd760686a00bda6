"""langchain_datashunt (work in progress)."""

__all__: list[str] = []
