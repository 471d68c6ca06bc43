"""node_kit: neural ODEs and continuous normalizing flows in JAX."""

from ._adjoint import (
    adjoint_from_name as adjoint_from_name,
    ADJOINT_NAMES as ADJOINT_NAMES,
    backsolve_adjoint as backsolve_adjoint,
    checkpoint_adjoint as checkpoint_adjoint,
    direct_adjoint as direct_adjoint,
)
from ._adjoint_choice import (
    adjoint_for_budget as adjoint_for_budget,
    AdjointCandidate as AdjointCandidate,
    AdjointChoice as AdjointChoice,
)
from ._cde import (
    CDEField as CDEField,
    control_path as control_path,
    INTERPOLATIONS as INTERPOLATIONS,
    NeuralCDE as NeuralCDE,
)
from ._checkpoint import (
    Checkpoint as Checkpoint,
    load_checkpoint as load_checkpoint,
    resume_checkpoint as resume_checkpoint,
    save_checkpoint as save_checkpoint,
)
from ._cnf import CNF as CNF
from ._cnf_loss import cnf_loss as cnf_loss
from ._conv_field import ConcatSquashConv2d as ConcatSquashConv2d, ConvField as ConvField
from ._deq import BACKWARD_MODES as BACKWARD_MODES, DEQ as DEQ, DEQSolution as DEQSolution
from ._events import event_fired as event_fired
from ._fixed_point import (
    AndersonAcceleration as AndersonAcceleration,
    Broyden as Broyden,
    FixedPointIteration as FixedPointIteration,
)
from ._history import read_history as read_history
from ._host_loop import TrainingDiverged as TrainingDiverged
from ._implicit import (
    implicit_minimise as implicit_minimise,
    proximal_loss as proximal_loss,
)
from ._io import CheckpointError as CheckpointError
from ._irregular import subsample_mask as subsample_mask, union_grid as union_grid
from ._latent_ode import gaussian_kl as gaussian_kl, LatentODE as LatentODE
from ._latent_ode_loss import (
    latent_ode_loss as latent_ode_loss,
    latent_ode_terms as latent_ode_terms,
)
from ._lock import RunLocked as RunLocked
from ._memory import (
    checkpoint_adjoint_for_budget as checkpoint_adjoint_for_budget,
    checkpoint_memory_model as checkpoint_memory_model,
    CheckpointMemoryModel as CheckpointMemoryModel,
    compile_gradient as compile_gradient,
    CompiledGradient as CompiledGradient,
    CompiledMemory as CompiledMemory,
)
from ._meta import (
    AbstractMetaLearner as AbstractMetaLearner,
    IMAML as IMAML,
    imaml_adapt as imaml_adapt,
    MAML as MAML,
    maml_adapt as maml_adapt,
    meta_loss as meta_loss,
    query_losses as query_losses,
)
from ._model import AbstractODEModel as AbstractODEModel, BatchedField as BatchedField
from ._multiscale import (
    default_scales as default_scales,
    MultiscaleCNF as MultiscaleCNF,
    scale_shapes as scale_shapes,
    squeeze as squeeze,
    unsqueeze as unsqueeze,
)
from ._neural_ode import NeuralODE as NeuralODE
from ._ode_rnn import (
    AbstractIrregularRNN as AbstractIrregularRNN,
    GapField as GapField,
    GRUDelta as GRUDelta,
    ODERNN as ODERNN,
)
from ._parallel import (
    DataParallel as DataParallel,
    initialize_distributed as initialize_distributed,
)
from ._regularisers import REGULARISER_NAMES as REGULARISER_NAMES
from ._reversible import ReversibleAdjoint as ReversibleAdjoint
from ._rk4 import RK4 as RK4
from ._runs import load_run as load_run
from ._solve import SolveSettings as SolveSettings
from ._trace import (
    AbstractTraceEstimator as AbstractTraceEstimator,
    ExactTrace as ExactTrace,
    HutchinsonTrace as HutchinsonTrace,
    PROBE_NAMES as PROBE_NAMES,
    trace_estimator_from_name as trace_estimator_from_name,
    TRACE_ESTIMATOR_NAMES as TRACE_ESTIMATOR_NAMES,
)
from ._training import fit as fit, make_step as make_step
from ._vector_field import (
    AbstractVectorField as AbstractVectorField,
    AugmentedField as AugmentedField,
    ConcatSquashField as ConcatSquashField,
    ConcatSquashLinear as ConcatSquashLinear,
    MLPField as MLPField,
)


__version__ = "0.1.0"
