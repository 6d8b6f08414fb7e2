"""Operations: what the workflows call (`ci`) and the MLflow server, UI and users."""
