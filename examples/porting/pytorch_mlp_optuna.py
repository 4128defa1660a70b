"""An Optuna script as Optuna's PyTorch example has it (optuna-examples, pytorch/pytorch_simple.py,
MIT): an MLP whose depth, widths, dropout, optimizer and learning rate are suggested inside the
objective, pruned on its validation accuracy per epoch. Offline: scikit-learn's bundled digits in
place of FashionMNIST. Its port to tunelab is pytorch_mlp_tunelab.py."""

import os

import optuna
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from optuna.trial import TrialState
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DEVICE = torch.device("cpu")
BATCHSIZE = 128
CLASSES = 10
EPOCHS = 10
N_TRIALS = int(os.environ.get("N_TRIALS", 100))

X, y = load_digits(return_X_y=True)
X_TRAIN, X_VALID, Y_TRAIN, Y_VALID = (
    torch.tensor(a) for a in train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
)


def define_model(trial):
    # The depth, each layer's width and dropout are suggested as the model is built.
    n_layers = trial.suggest_int("n_layers", 1, 3)
    layers = []
    in_features = 64
    for i in range(n_layers):
        out_features = trial.suggest_int(f"n_units_l{i}", 4, 128)
        layers += [nn.Linear(in_features, out_features), nn.ReLU()]
        layers.append(nn.Dropout(trial.suggest_float(f"dropout_l{i}", 0.2, 0.5)))
        in_features = out_features
    layers += [nn.Linear(in_features, CLASSES), nn.LogSoftmax(dim=1)]
    return nn.Sequential(*layers)


def objective(trial):
    model = define_model(trial).to(DEVICE)
    optimizer_name = trial.suggest_categorical("optimizer", ["Adam", "RMSprop", "SGD"])
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    optimizer = getattr(optim, optimizer_name)(model.parameters(), lr=lr)

    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(X_TRAIN))
        for start in range(0, len(order), BATCHSIZE):
            batch = order[start : start + BATCHSIZE]
            data, target = X_TRAIN[batch].float().to(DEVICE), Y_TRAIN[batch].to(DEVICE)
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()

        model.eval()
        with torch.no_grad():
            pred = model(X_VALID.float().to(DEVICE)).argmax(dim=1)
            accuracy = (pred == Y_VALID.to(DEVICE)).float().mean().item()

        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise optuna.exceptions.TrialPruned()

    return accuracy


if __name__ == "__main__":
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=N_TRIALS, timeout=600)

    pruned_trials = study.get_trials(deepcopy=False, states=[TrialState.PRUNED])
    complete_trials = study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])
    print("Study statistics: ")
    print("  Number of finished trials: ", len(study.trials))
    print("  Number of pruned trials: ", len(pruned_trials))
    print("  Number of complete trials: ", len(complete_trials))
    print("Best trial:")
    trial = study.best_trial
    print("  Value: ", trial.value)
    print("  Params: ")
    for key, value in trial.params.items():
        print(f"    {key}: {value}")
