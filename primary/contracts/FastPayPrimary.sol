// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title FastPayPrimary: money into and out of a FastPay committee on an Ethereum chain.
///
/// Deposits: `deposit(account)` escrows ether and emits `Deposited` with a sequential index
/// (0, 1, 2, ...). The committee's authorities follow these events some blocks deep and credit
/// each index exactly once to the FastPay account.
///
/// Units: 1 FastPay unit = 1 gwei (1e9 wei). A deposit must be a positive whole number of gwei
/// that fits FastPay's u64 amounts (at most 2^64 - 1 gwei, about 18.4 billion ether), so every
/// escrowed wei is represented in FastPay and nothing is rounded away.
///
/// Redeems: `redeem(...)` pays out a FastPay transfer whose recipient is an Ethereum address,
/// once per (sender account, sequence number), if authorities holding at least `quorum` weight
/// signed the redeem digest (see `redeemDigest`). The committee (signers, weights, quorum,
/// committee id) is fixed at deployment; a new committee deploys a new contract.
///
/// Signatures: each authority has a secp256k1 key next to its ed25519 FastPay key, and the
/// contract checks it with the `ecrecover` precompile (3,000 gas a signature). The EVM has no
/// ed25519 precompile: verifying the authorities' ed25519 signatures in Solidity costs hundreds
/// of thousands of gas per signature, so a redeem for a committee of 10 would cost millions.
/// Production bridges (the Sui bridge's Ethereum contracts among them) make the same choice of
/// secp256k1 keys checked with `ecrecover`. docs/BENCHMARKS.md has the measured gas per redeem.
/// Signatures arrive ordered by strictly increasing signer address, so a duplicate is rejected
/// with one comparison instead of a set.
contract FastPayPrimary {
    /// Wei in one FastPay unit.
    uint256 public constant WEI_PER_UNIT = 1 gwei;

    /// Domain tag that starts every redeem digest, so no other signed message of an authority
    /// (an Ethereum transaction, another protocol's digest) can pass as a redeem approval.
    bytes32 public constant REDEEM_DOMAIN = keccak256("fastpay.primary.redeem.v1");

    /// Half the order of secp256k1: signatures with a larger `s` are the malleated twins of
    /// canonical ones and are rejected (EIP-2).
    uint256 private constant HALF_CURVE_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// One authority's secp256k1 signature of a redeem digest.
    struct Signature {
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    /// The FastPay committee this contract serves.
    bytes32 public immutable committeeId;
    /// The weight that approves a redeem.
    uint64 public immutable quorum;
    /// The total weight of the committee.
    uint64 public immutable totalWeight;
    /// The block the contract was deployed in: followers scan for deposits from here.
    uint64 public immutable deployedAt;

    /// Each authority's weight by its secp256k1 address; zero for every other address.
    mapping(address => uint64) public weightOf;
    /// The authorities' addresses in increasing order.
    address[] private signerList;

    /// Number of deposits so far; also the index of the next one.
    uint64 public depositCount;
    /// Units escrowed by all deposits so far.
    uint256 public totalDeposited;
    /// Units paid out by all redeems so far.
    uint256 public totalRedeemed;

    /// Whether the transfer (sender, sequence) has been redeemed.
    mapping(bytes32 => mapping(uint64 => bool)) public redeemed;

    /// Deposit number `index` escrowed `amount` units for FastPay `account`.
    event Deposited(uint64 indexed index, bytes32 indexed account, uint64 amount);
    /// The transfer (sender, sequence) paid `amount` units to `recipient`.
    event Redeemed(bytes32 indexed sender, uint64 indexed sequence, address indexed recipient, uint64 amount);

    /// The committee given to the constructor is malformed (`what` says how).
    error BadCommittee(string what);
    /// A deposit of zero wei.
    error ZeroDeposit();
    /// A deposit that is not a whole number of gwei.
    error FractionalUnit(uint256 weiValue);
    /// A deposit of more units than FastPay's u64 amounts hold.
    error DepositTooLarge(uint256 weiValue);
    /// A deposit to an account that cannot be a FastPay account (the zero key).
    error MalformedAccount(bytes32 account);
    /// A redeem of zero units.
    error ZeroAmount();
    /// A redeem to the zero address.
    error ZeroRecipient();
    /// The transfer (sender, sequence) was redeemed already.
    error AlreadyRedeemed(bytes32 sender, uint64 sequence);
    /// Signature number `index` is not a valid canonical secp256k1 signature.
    error BadSignature(uint256 index);
    /// Signature number `index` recovers to an address outside the committee.
    error UnknownSigner(uint256 index, address signer);
    /// Signature number `index` is not from a signer strictly after the previous one.
    error DuplicateOrUnorderedSigner(uint256 index, address signer);
    /// The signatures carry `weight`, less than the `quorum`.
    error BelowQuorum(uint64 weight, uint64 quorum);
    /// Paying out would take more than the escrow holds (only a faulty committee gets here).
    error InsufficientEscrow(uint256 escrowUnits, uint64 amount);
    /// The recipient refused the payment.
    error PayoutFailed(address recipient);

    /// Fixes the committee: `signers[i]` (strictly increasing addresses) votes with `weights[i]`.
    constructor(address[] memory signers, uint64[] memory weights, uint64 quorum_, bytes32 committeeId_) {
        if (signers.length == 0) revert BadCommittee("no signers");
        if (signers.length != weights.length) revert BadCommittee("signers and weights differ in length");
        uint256 total = 0;
        address previous = address(0);
        for (uint256 i = 0; i < signers.length; i++) {
            if (signers[i] <= previous) revert BadCommittee("signers not strictly increasing and nonzero");
            if (weights[i] == 0) revert BadCommittee("zero weight");
            weightOf[signers[i]] = weights[i];
            signerList.push(signers[i]);
            total += weights[i];
            previous = signers[i];
        }
        if (total > type(uint64).max) revert BadCommittee("total weight exceeds u64");
        if (quorum_ == 0 || quorum_ > total) revert BadCommittee("quorum not in 1..=total weight");
        quorum = quorum_;
        totalWeight = uint64(total);
        committeeId = committeeId_;
        deployedAt = uint64(block.number);
    }

    /// Escrows `msg.value` (a whole number of gwei) for FastPay `account`; returns its index.
    function deposit(bytes32 account) external payable returns (uint64 index) {
        if (msg.value == 0) revert ZeroDeposit();
        if (msg.value % WEI_PER_UNIT != 0) revert FractionalUnit(msg.value);
        uint256 units = msg.value / WEI_PER_UNIT;
        if (units > type(uint64).max) revert DepositTooLarge(msg.value);
        if (account == bytes32(0)) revert MalformedAccount(account);
        index = depositCount;
        depositCount = index + 1;
        totalDeposited += units;
        emit Deposited(index, account, uint64(units));
    }

    /// The digest the authorities sign to approve paying `amount` units to `recipient` for the
    /// FastPay transfer (`sender`, `sequence`).
    function redeemDigest(bytes32 sender, uint64 sequence, address recipient, uint64 amount)
        public
        view
        returns (bytes32)
    {
        return keccak256(
            abi.encode(REDEEM_DOMAIN, block.chainid, address(this), committeeId, sender, sequence, recipient, amount)
        );
    }

    /// Pays `amount` units to `recipient` for the FastPay transfer (`sender`, `sequence`), once,
    /// if `signatures` (by strictly increasing signer address) carry at least a quorum.
    function redeem(
        bytes32 sender,
        uint64 sequence,
        address payable recipient,
        uint64 amount,
        Signature[] calldata signatures
    ) external {
        if (redeemed[sender][sequence]) revert AlreadyRedeemed(sender, sequence);
        if (amount == 0) revert ZeroAmount();
        if (recipient == address(0)) revert ZeroRecipient();
        bytes32 digest = redeemDigest(sender, sequence, recipient, amount);
        uint256 weight = 0;
        address previous = address(0);
        for (uint256 i = 0; i < signatures.length; i++) {
            Signature calldata sig = signatures[i];
            if (uint256(sig.s) > HALF_CURVE_ORDER || (sig.v != 27 && sig.v != 28)) revert BadSignature(i);
            address signer = ecrecover(digest, sig.v, sig.r, sig.s);
            if (signer == address(0)) revert BadSignature(i);
            uint64 w = weightOf[signer];
            if (w == 0) revert UnknownSigner(i, signer);
            if (signer <= previous) revert DuplicateOrUnorderedSigner(i, signer);
            previous = signer;
            weight += w;
        }
        if (weight < quorum) revert BelowQuorum(uint64(weight), quorum);
        uint256 escrow = totalDeposited - totalRedeemed;
        if (amount > escrow) revert InsufficientEscrow(escrow, amount);
        // Effects before the call: a re-entrant redeem of the same transfer sees it redeemed.
        redeemed[sender][sequence] = true;
        totalRedeemed += amount;
        emit Redeemed(sender, sequence, recipient, amount);
        (bool ok,) = recipient.call{value: uint256(amount) * WEI_PER_UNIT}("");
        if (!ok) revert PayoutFailed(recipient);
    }

    /// The committee's signer addresses in increasing order.
    function committeeSigners() external view returns (address[] memory) {
        return signerList;
    }

    /// Units held in escrow: deposited minus redeemed.
    function escrowUnits() external view returns (uint256) {
        return totalDeposited - totalRedeemed;
    }
}
